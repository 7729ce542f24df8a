//! The account admin's password rules (SPEC §4): at least 8 characters,
//! at least three of upper case, lower case, digits and other characters,
//! not containing the company's name (any case), and no character three
//! or more times in a row. Every broken rule is named, so the page can
//! say all that is wrong at once. Pure.

/// Why `password` is refused (empty: it is good). `company` names the
/// account (and the site), whichever are known.
pub fn problems(password: &str, company: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    if password.chars().count() < 8 {
        out.push("at least 8 characters".to_owned());
    }
    let classes = [
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|&&c| c).count() < 3 {
        out.push("at least three of: upper case, lower case, digits, other characters".to_owned());
    }
    let lower = password.to_lowercase();
    for name in company {
        let name = name.trim().to_lowercase();
        if name.chars().count() >= 3 && lower.contains(&name) {
            out.push(format!("must not contain the company's name ({name:?})"));
        }
    }
    let chars: Vec<char> = password.chars().collect();
    // Named without the characters: a refusal never echoes any part of
    // the password (it is shown on the page, and may be logged).
    if chars.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]) {
        out.push("no character three times in a row".to_owned());
    }
    if password.chars().count() > 128 {
        out.push("at most 128 characters".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_is_named_when_broken() {
        assert!(problems("Gateway-2026", &["ACME"]).is_empty());
        assert_eq!(
            problems("gateway2026x", &[]),
            ["at least three of: upper case, lower case, digits, other characters"],
            "lower case and digits: two kinds"
        );
        assert_eq!(problems("Ab1!", &[]), ["at least 8 characters"]);
        assert_eq!(
            problems("gatewaypassword", &[]),
            ["at least three of: upper case, lower case, digits, other characters"]
        );
        assert_eq!(
            problems("MyAcme-2026", &["ACME"]),
            ["must not contain the company's name (\"acme\")"]
        );
        assert_eq!(
            problems("Gateway-2000", &[]),
            ["no character three times in a row"]
        );
        assert_eq!(problems("aaa", &[]).len(), 3);
    }
}
