//! "Did you mean ...?": the nearest known word to a mistyped one, by edit distance
//! (case-insensitive). One place for every strict parser (flags, JSON keys, profiles, usages).

/// The candidate nearest to `input`, if it is within `max_distance(candidate)` edits.
pub fn nearest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>, max_distance: impl Fn(&str) -> usize) -> Option<&'a str> {
    let input = input.to_ascii_lowercase();
    candidates.into_iter().map(|c| (strsim::levenshtein(&c.to_ascii_lowercase(), &input), c)).filter(|(d, c)| *d <= max_distance(c)).min().map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_within_the_limit_only() {
        assert_eq!(nearest("peeer", ["peer", "server", "client"], |_| 3), Some("peer"));
        assert_eq!(nearest("EXPIRE", ["expiry", "usages"], |_| 3), Some("expiry"));
        assert_eq!(nearest("zzzzzz", ["peer"], |_| 2), None);
    }
}
