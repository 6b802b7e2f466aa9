//! Small text helpers shared by crates that quote outside text in their messages.

/// The first `max_chars` characters of `text`, with `…` when something was cut: provider
/// answers quoted in errors stay readable without flooding logs.
pub fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clips_by_characters_and_marks_the_cut() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hi", 2), "hi");
    }
}
