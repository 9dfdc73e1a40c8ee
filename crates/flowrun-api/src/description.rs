//! Schema descriptions as `kubectl explain` shows them. The `///` comments that become them are
//! wrapped at 100 columns for the source, and schemars keeps those line breaks, so `kubectl
//! explain` would break every sentence where the source did. Kubernetes' own API keeps a
//! paragraph on one line; this makes ours do the same, keeping what Markdown keeps apart: blank
//! lines between paragraphs, list items, table rows and code blocks.

use schemars::Schema;
use schemars::transform::transform_subschemas;

/// A schemars transform (`#[schemars(transform = join_description_lines)]`): joins the lines
/// of every paragraph in the descriptions of this schema and all its subschemas.
pub fn join_description_lines(schema: &mut Schema) {
    if let Some(serde_json::Value::String(description)) = schema.get_mut("description") {
        *description = join_lines(description);
    }
    transform_subschemas(&mut join_description_lines, schema);
}

/// `text` with each paragraph on one line. A list item starts a new line, and the indented
/// lines that continue it join it; a fenced or indented code block, and table rows, keep
/// their lines. Joining joined text changes nothing.
pub fn join_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_fence = false;
    // Whether the line before was text that a plain next line continues.
    let mut open = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let fence = trimmed.starts_with("```") || trimmed.starts_with("~~~");
        let continues = open && !in_fence && !fence && !trimmed.is_empty() && !starts_block(line);
        if continues {
            out.push(' ');
            out.push_str(trimmed);
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line.trim_end());
        if fence {
            in_fence = !in_fence;
        }
        // Code and table rows are kept line by line; text after them does not join them.
        open = !in_fence
            && !fence
            && !trimmed.is_empty()
            && !trimmed.starts_with('|')
            && (indent < 4 || list_item(trimmed));
    }
    out
}

/// A line that starts something of its own rather than continuing the line before.
fn starts_block(line: &str) -> bool {
    let trimmed = line.trim_start();
    let indent = line.len() - trimmed.len();
    list_item(trimmed) || trimmed.starts_with('|') || trimmed.starts_with('#') || indent >= 4
}

/// `- item`, `* item`, `+ item`, `1. item` or `1) item`.
fn list_item(trimmed: &str) -> bool {
    if let Some(rest) = trimmed.strip_prefix(['-', '*', '+']) {
        return rest.starts_with(' ');
    }
    let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
    digits > 0
        && trimmed[digits..]
            .strip_prefix(['.', ')'])
            .is_some_and(|rest| rest.starts_with(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_become_one_line_and_stay_apart() {
        // (doc comment text, description)
        let table = [
            ("One line.", "One line."),
            (
                "Seconds the run may stay in progress. Past\nthem the run is canceled.",
                "Seconds the run may stay in progress. Past them the run is canceled.",
            ),
            (
                "A request to run a flow once.\n\nThe operator calls\nStartFlow.",
                "A request to run a flow once.\n\nThe operator calls StartFlow.",
            ),
            (
                "Three\nlines\njoined.\n\n\nTwo blank lines kept.",
                "Three lines joined.\n\n\nTwo blank lines kept.",
            ),
            ("Trailing spaces   \ngo.", "Trailing spaces go."),
        ];
        for (text, expected) in table {
            assert_eq!(join_lines(text), expected, "{text:?}");
        }
    }

    #[test]
    fn list_items_code_and_tables_keep_their_own_lines() {
        // (doc comment text, description)
        let table = [
            (
                "One of:\n- Allow: runs may overlap,\n  as a CronJob's do;\n- Forbid: skip.",
                "One of:\n- Allow: runs may overlap, as a CronJob's do;\n- Forbid: skip.",
            ),
            (
                "Steps:\n1. record the start\n2) call\n   StartFlow\n* and\n+ then",
                "Steps:\n1. record the start\n2) call StartFlow\n* and\n+ then",
            ),
            (
                "For example:\n```yaml\nspec:\n  flowName: f\n```\nthen\napply it.",
                "For example:\n```yaml\nspec:\n  flowName: f\n```\nthen apply it.",
            ),
            (
                "Indented code:\n\n    kubectl get\n    flowruns\n\nafter\nit.",
                "Indented code:\n\n    kubectl get\n    flowruns\n\nafter it.",
            ),
            (
                "| a | b |\n|---|---|\n| 1 | 2 |",
                "| a | b |\n|---|---|\n| 1 | 2 |",
            ),
            (
                "-1 is not a list item,\n-5 neither.",
                "-1 is not a list item, -5 neither.",
            ),
        ];
        for (text, expected) in table {
            assert_eq!(join_lines(text), expected, "{text:?}");
        }
    }

    #[test]
    fn joining_twice_changes_nothing() {
        let text = "A\nparagraph.\n\n- an item\n  continued\n- another\n\n```\ncode\nhere\n```\n";
        let once = join_lines(text);
        assert_eq!(join_lines(&once), once);
    }
}
