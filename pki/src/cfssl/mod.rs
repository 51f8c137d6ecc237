//! cfssl and cfssljson compatibility.
