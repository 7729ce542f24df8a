//! The numbers a call is carried to (SPEC §4 Advanced, "inbound digits"
//! and "outbound digits"): per direction, a prefix taken off the dialled
//! number when it is there, then one put in front — e.g. the PBX's trunk
//! access digit `9` removed toward the cloud, `0` added toward the PBX.
//! Emergency numbers (SPEC §6) are never rewritten: the PBX routes them
//! as dialled. Owns only the digit strings; the call applies them.

/// Emergency numbers (SPEC §6): always carried, never rewritten.
pub const EMERGENCY: [&str; 8] = ["000", "110", "111", "112", "118", "119", "911", "999"];

/// Whether `number` (a Request-URI's user part) is an emergency number.
pub fn is_emergency(number: &str) -> bool {
    EMERGENCY.contains(&number)
}

/// What one direction's numbers go through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigitRule {
    /// Taken off the front when the number starts with it.
    pub strip: String,
    /// Then put in front.
    pub prepend: String,
}

/// Characters a dialled number and a rule's digits may hold.
pub fn is_dial_string(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'+'))
}

impl DigitRule {
    /// The number `dialled` is carried to. Emergency numbers are kept;
    /// so is a number the rule would leave empty (refused by the call as
    /// incomplete rather than sent nowhere).
    pub fn apply(&self, dialled: &str) -> String {
        if is_emergency(dialled) {
            return dialled.to_owned();
        }
        let rest = dialled.strip_prefix(self.strip.as_str()).unwrap_or(dialled);
        format!("{}{rest}", self.prepend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(strip: &str, prepend: &str) -> DigitRule {
        DigitRule {
            strip: strip.into(),
            prepend: prepend.into(),
        }
    }

    #[test]
    fn a_rule_strips_when_present_then_prepends() {
        let r = rule("9", "+33");
        assert_eq!(r.apply("90123456789"), "+330123456789");
        assert_eq!(
            r.apply("0123456789"),
            "+330123456789",
            "no 9: nothing taken"
        );
        assert_eq!(DigitRule::default().apply("2001"), "2001");
        assert_eq!(rule("", "0").apply("2001"), "02001");
    }

    #[test]
    fn emergency_numbers_pass_unchanged() {
        let r = rule("1", "0");
        for n in EMERGENCY {
            assert_eq!(r.apply(n), n);
        }
        assert_eq!(r.apply("1120"), "0120", "only the whole number is one");
    }

    #[test]
    fn dial_strings_are_digits_star_hash_plus() {
        assert!(is_dial_string("+33*12#"));
        assert!(is_dial_string(""));
        assert!(!is_dial_string("9a"));
        assert!(!is_dial_string("9 "));
    }
}
