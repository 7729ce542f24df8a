//! Everything wrong with a configuration file.

use std::fmt;
use std::path::PathBuf;

/// Everything wrong with a configuration file, one line each.
#[derive(Debug)]
pub struct ConfigError {
    pub(super) file: PathBuf,
    pub(super) problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {p}", self.file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
