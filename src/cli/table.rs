//! kubectl-style column tables: left-aligned, two spaces between columns, no trailing blanks.

/// Renders `header` and `rows` as aligned text, one line per row, each ending in `\n`.
/// Widths count characters, not bytes, so non-ASCII names do not skew the columns.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(cols) {
            line.push_str(cell);
            if i + 1 < cols {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_with_two_space_gaps_and_no_trailing_blanks() {
        let rows = vec![
            vec!["web".to_string(), "1/1".into(), "Running".into()],
            vec!["database-0".to_string(), "0/1".into(), "".into()],
        ];
        let out = render(&["NAME", "READY", "STATUS"], &rows);
        assert_eq!(
            out,
            "NAME        READY  STATUS\n\
             web         1/1    Running\n\
             database-0  0/1\n"
        );
    }

    #[test]
    fn a_table_with_no_rows_is_just_the_header() {
        assert_eq!(render(&["NAME", "AGE"], &[]), "NAME  AGE\n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let rows = vec![vec!["été".to_string(), "x".into()]];
        assert_eq!(render(&["N", "V"], &rows), "N    V\nété  x\n");
    }
}
