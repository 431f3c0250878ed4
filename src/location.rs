//! Where in a file a user wrote something: line and column, counted as
//! editors count them, for errors that point at a recipe, theme or keymap.

/// 1-based line and column of byte `offset` in `text`. The column counts
/// characters, not bytes: `name = "Zürich", x` puts `x` at column 18, as an
/// editor shows it (byte 19 of the line). An offset past the end means the end; one inside a
/// character means that character.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters() {
        let text = "a = 1\nname = \"Zürich\", x\n";
        let x = text.find(", x").unwrap() + 2;
        // 18 bytes into the line (ü is two), after 17 characters.
        assert_eq!(x - text.find("name").unwrap(), 18);
        assert_eq!(line_col(text, x), (2, 18));
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        let u = text.find('ü').unwrap();
        assert_eq!(line_col(text, u + 1), line_col(text, u));
        assert_eq!(line_col(text, 10_000), (3, 1));
        assert_eq!(line_col("→→x", "→→".len()), (1, 3));
    }
}
