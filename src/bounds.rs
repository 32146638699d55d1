//! Bounds on what the controller stores in an object's status. Anything it copies from the outside (a
//! metric's answer, an error message, a commit's blame) is hostile: stored whole it can push the object
//! past the API server's ~1.5 MiB limit, and then every status write fails and the object is stuck.
//! These helpers cut text with a visible marker and measure a status before it is written.
use std::borrow::Cow;

use serde::Serialize;

/// A status is trimmed to stay under this many bytes of JSON: far below the API server's limit (about
/// 1.5 MiB for the whole object), so the spec, metadata and managed fields still fit beside it.
pub const MAX_STATUS_BYTES: usize = 256 * 1024;

/// `text`, cut at a character boundary so that with the marker `…[truncated, N bytes]` (N: the original
/// length) it holds at most `max_bytes` bytes. Text that fits is returned as it is.
pub fn truncate(text: &str, max_bytes: usize) -> Cow<'_, str> {
    if text.len() <= max_bytes {
        return Cow::Borrowed(text);
    }
    let marker = format!("…[truncated, {} bytes]", text.len());
    let mut keep = max_bytes.saturating_sub(marker.len());
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    Cow::Owned(format!("{}{marker}", &text[..keep]))
}

/// Cuts an optional stored text in place (see [`truncate`]).
pub fn truncate_in_place(text: &mut Option<String>, max_bytes: usize) {
    if let Some(value) = text
        && value.len() > max_bytes
    {
        *value = truncate(value, max_bytes).into_owned();
    }
}

/// The size of `value` as the JSON the API server receives. A value that does not serialize counts as
/// too big (`usize::MAX`), so callers trim rather than write it.
pub fn json_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |json| json.len())
}

/// Keeps the newest `max` elements of a list ordered oldest first.
pub fn keep_newest<T>(list: &mut Vec<T>, max: usize) {
    let excess = list.len().saturating_sub(max);
    list.drain(..excess);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_fits_is_untouched() {
        assert!(matches!(truncate("0.99", 4096), Cow::Borrowed("0.99")));
        assert_eq!(truncate("", 0), "");
    }

    #[test]
    fn long_text_is_cut_with_a_marker_naming_the_original_length() {
        let long = "x".repeat(2 * 1024 * 1024);
        let cut = truncate(&long, 4096);
        assert!(cut.len() <= 4096, "{}", cut.len());
        assert!(
            cut.ends_with("…[truncated, 2097152 bytes]"),
            "{}",
            &cut[cut.len() - 40..]
        );
        assert!(cut.starts_with("xxxx"));
    }

    #[test]
    fn cutting_never_splits_a_character() {
        let long = "é".repeat(100);
        for max in 30..60 {
            let cut = truncate(&long, max);
            assert!(cut.len() <= max, "{max}: {}", cut.len());
            assert!(cut.contains("[truncated, 200 bytes]"));
        }
    }

    #[test]
    fn a_limit_below_the_marker_keeps_only_the_marker() {
        assert_eq!(truncate("abcdefghij", 3), "…[truncated, 10 bytes]");
    }

    #[test]
    fn in_place_cutting_and_keeping_the_newest() {
        let mut text = Some("y".repeat(100));
        truncate_in_place(&mut text, 50);
        assert!(text.as_deref().unwrap().ends_with("[truncated, 100 bytes]"));
        let mut none: Option<String> = None;
        truncate_in_place(&mut none, 50);
        assert_eq!(none, None);

        let mut list: Vec<u32> = (0..10).collect();
        keep_newest(&mut list, 3);
        assert_eq!(list, [7, 8, 9]);
        keep_newest(&mut list, 5);
        assert_eq!(list, [7, 8, 9]);
    }

    #[test]
    fn json_len_is_the_serialized_size() {
        assert_eq!(json_len(&"abc"), 5);
        assert_eq!(json_len(&vec![1, 2]), 5);
    }
}
