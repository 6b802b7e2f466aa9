//! Token estimates for budget checks made before the provider says what a call really used.

/// An upper-leaning estimate of the tokens in `text`: one per three UTF-8 bytes. English runs
/// about four bytes a token and CJK about three, so this overcounts rather than lets a budget
/// be overrun; a few tokens are added for message framing.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(3) + 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_with_text_and_count_wide_scripts() {
        assert_eq!(estimate_tokens(""), 4);
        assert_eq!(estimate_tokens("abcdef"), 6);
        assert!(estimate_tokens("こんにちは") >= 5 + 4, "one token per CJK character at least");
    }
}
