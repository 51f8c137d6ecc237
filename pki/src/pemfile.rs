//! PEM in and out. Input may hold several blocks (an `EC PARAMETERS` block before a key, a chain
//! of certificates, a bundle of CAs); output always uses LF line endings.

use crate::error::{PkiError, Result};

/// Encodes one DER object under `label`, LF line endings, 64 columns.
pub fn encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(&pem::Pem::new(label, der.to_vec()), pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}

/// All PEM blocks of `text`; `what` names the input in errors.
pub fn blocks(text: &[u8], what: &str) -> Result<Vec<pem::Pem>> {
    let blocks = pem::parse_many(text).map_err(|e| PkiError::bad_input(what, format!("not valid PEM: {e}")))?;
    if blocks.is_empty() {
        return Err(PkiError::bad_input(what, "no PEM block found (expected -----BEGIN ...-----)"));
    }
    Ok(blocks)
}

/// The DER of every block labelled `CERTIFICATE`, in order.
pub fn certificates(text: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
    let certs: Vec<Vec<u8>> = blocks(text, what)?.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| b.into_contents()).collect();
    if certs.is_empty() {
        let labels = labels(text);
        return Err(PkiError::bad_input(what, format!("no CERTIFICATE block (found: {labels}); is this the right file?")));
    }
    Ok(certs)
}

/// The DER of the first block labelled `CERTIFICATE`.
pub fn first_certificate(text: &[u8], what: &str) -> Result<Vec<u8>> {
    certificates(text, what).map(|mut v| v.swap_remove(0))
}

/// A comma-separated list of the labels in `text`, for error messages.
pub fn labels(text: &[u8]) -> String {
    match pem::parse_many(text) {
        Ok(b) if !b.is_empty() => b.iter().map(|b| b.tag().to_string()).collect::<Vec<_>>().join(", "),
        _ => "no PEM blocks".into(),
    }
}
