//! Keeping passwords out of what is printed or stored: `redact` hides the password of every connection
//! string in a text (log lines, messages, job errors).

/// `text` with the password of every connection string in it replaced by `***`: the password of a URL
/// (`postgresql://user:PASSWORD@host`) and the value of a `password=` pair (key=value strings, URL
/// parameters). Only there: a password that also occurs as ordinary text (a file name, a date) is left
/// alone, so that messages stay readable.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, len)) = next_secret(rest) {
        out.push_str(&rest[..at]);
        out.push_str("***");
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    out
}

/// The first password in `text`: its byte offset and length.
fn next_secret(text: &str) -> Option<(usize, usize)> {
    match (url_password(text), pair_password(text)) {
        (Some(u), Some(p)) => Some(if u.0 <= p.0 { u } else { p }),
        (u, p) => u.or(p),
    }
}

/// `scheme://user:PASSWORD@host...`: the password of the first URL that has one.
fn url_password(text: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        let authority_len = text[start..]
            .find(|c: char| "/?#\"'<>`".contains(c) || c.is_whitespace())
            .unwrap_or(text.len() - start);
        let authority = &text[start..start + authority_len];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
            && colon + 1 < at
        {
            return Some((start + colon + 1, at - colon - 1));
        }
        from = start;
    }
    None
}

/// `password=VALUE`, `password = 'quoted \' value'` or `?password=VALUE&`: the first value.
fn pair_password(text: &str) -> Option<(usize, usize)> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find("password") {
        let key = from + found;
        from = key + "password".len();
        let starts_word = key == 0 || !text.as_bytes()[key - 1].is_ascii_alphanumeric();
        let Some(value) = text[from..]
            .trim_start()
            .strip_prefix('=')
            .filter(|_| starts_word)
        else {
            continue;
        };
        let value = value.trim_start();
        let at = text.len() - value.len();
        let len = if let Some(quoted) = value.strip_prefix('\'') {
            let mut escaped = false;
            let closing = quoted.char_indices().find(|&(_, c)| {
                let closes = c == '\'' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            });
            1 + closing.map_or(quoted.len(), |(i, _)| i + 1)
        } else {
            value
                .find(|c: char| c.is_whitespace() || c == '&')
                .unwrap_or(value.len())
        };
        if len > 0 {
            return Some((at, len));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_where_they_are_passwords_and_nowhere_else() {
        for (text, shown) in [
            (
                "url postgresql://alice:s%40cret9@db:5/x?sslmode=require",
                "url postgresql://alice:***@db:5/x?sslmode=require",
            ),
            (
                "postgres://trips:trips@h/trips",
                "postgres://trips:***@h/trips",
            ),
            ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
            ("postgresql://h:5432/db", "postgresql://h:5432/db"),
            (
                "host=h password=trips dbname=trips",
                "host=h password=*** dbname=trips",
            ),
            (
                "host=h password = 'a b\\' c' user=u",
                "host=h password = *** user=u",
            ),
            (
                "postgresql://h/db?user=u&password=0&sslmode=disable",
                "postgresql://h/db?user=u&password=***&sslmode=disable",
            ),
            // Ordinary text that holds the password, or the word, is left alone.
            (
                "tripsbad.csv:2: column 4 (datetime): 2018-10-01 00:00:00",
                "tripsbad.csv:2: column 4 (datetime): 2018-10-01 00:00:00",
            ),
            (
                "password authentication failed for user \"trips\"",
                "password authentication failed for user \"trips\"",
            ),
            ("a mypassword=x b", "a mypassword=x b"),
        ] {
            assert_eq!(redact(text), shown, "{text}");
        }
    }
}
