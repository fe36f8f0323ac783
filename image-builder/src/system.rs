//! The system description, `system.toml`: which programs the image carries.

use crate::Error;
use serde::Deserialize;
use std::path::Path;

/// The parsed description.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemDescription {
    /// Programs to build and pack; `init` must be among them.
    #[serde(rename = "program")]
    pub programs: Vec<Program>,
}

/// One program.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    /// Its name in the archive (the kernel starts the one called `init`).
    pub name: String,
    /// The crate that builds it, if not the one called `name`.
    package: Option<String>,
}

impl Program {
    /// The crate that builds it.
    pub fn package(&self) -> &str {
        self.package.as_deref().unwrap_or(&self.name)
    }
}

impl SystemDescription {
    /// Reads and checks the description at `path`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the file and what is wrong with it.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::Io(path.to_path_buf(), error))?;
        Self::parse(&text).map_err(|reason| Error::Invalid(format!("{}: {reason}", path.display())))
    }

    /// Parses and checks description text.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let description: Self = toml::from_str(text).map_err(|error| error.to_string())?;
        if !description.programs.iter().any(|program| program.name == "init") {
            return Err(String::from("no program named 'init': the kernel has nothing to start"));
        }
        for (index, program) in description.programs.iter().enumerate() {
            if description.programs[..index]
                .iter()
                .any(|other| other.name == program.name)
            {
                return Err(format!("program '{}' is listed twice", program.name));
            }
        }
        Ok(description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_workspace_description() {
        SystemDescription::load(&crate::workspace_root().join("system.toml")).unwrap();
    }

    #[test]
    fn refuses_a_description_without_init() {
        let error = SystemDescription::parse("[[program]]\nname = \"shell\"\n").unwrap_err();
        assert!(error.contains("no program named 'init'"), "{error}");
    }

    #[test]
    fn a_program_may_come_from_another_package() {
        let description =
            SystemDescription::parse("[[program]]\nname = \"init\"\npackage = \"kernel-tests\"\n").unwrap();
        assert_eq!(description.programs[0].package(), "kernel-tests");
    }

    #[test]
    fn refuses_duplicates_and_unknown_fields() {
        let error =
            SystemDescription::parse("[[program]]\nname = \"init\"\n[[program]]\nname = \"init\"\n").unwrap_err();
        assert!(error.contains("listed twice"), "{error}");
        assert!(SystemDescription::parse("[[program]]\nname = \"init\"\ncolour = 1\n").is_err());
    }
}
