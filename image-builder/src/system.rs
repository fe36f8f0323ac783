//! Reading the system description (`system.toml`, or one under `systems/`)
//! and checking it against the programs that exist and their sizes.

use crate::Error;
use std::path::Path;
pub use system_description::SystemDescription;

/// Reads the description at `path`.
///
/// # Errors
/// [`Error::Invalid`] naming the file and the TOML problem.
pub fn load(path: &Path) -> Result<SystemDescription, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::Io(path.to_path_buf(), error))?;
    toml::from_str(&text).map_err(|error| Error::Invalid(format!("{}: {error}", path.display())))
}

/// The programs a description needs built: init's, then each process's,
/// each once.
pub fn programs(description: &SystemDescription) -> Vec<String> {
    let mut programs = vec![description.init.clone()];
    for process in &description.processes {
        if !programs.contains(&process.program) {
            programs.push(process.program.clone());
        }
    }
    programs
}

/// Whether a program crate of this name exists in the workspace.
pub fn program_exists(root: &Path, program: &str) -> bool {
    ["servers", "userland"]
        .iter()
        .any(|folder| root.join(folder).join(program).join("Cargo.toml").is_file())
}

/// Checks `description`, with `program_size` giving each built program's
/// loaded size.
///
/// # Errors
/// [`Error::Invalid`] listing every problem, each with its process and field.
pub fn check(
    path: &Path,
    description: &SystemDescription,
    program_size: impl Fn(&str) -> Option<u64>,
) -> Result<(), Error> {
    description.check(program_size).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|problem| format!("  {problem}")).collect();
        Error::Invalid(format!(
            "{}: the system description is wrong:\n{}",
            path.display(),
            list.join("\n")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_description_in_the_tree_parses_and_names_existing_programs() {
        let root = crate::workspace_root();
        let mut files = vec![root.join("system.toml")];
        for entry in std::fs::read_dir(root.join("systems")).unwrap() {
            files.push(entry.unwrap().path());
        }
        for file in files {
            let description = load(&file).unwrap();
            for program in programs(&description) {
                assert!(
                    program_exists(&root, &program),
                    "{}: no program '{program}'",
                    file.display()
                );
            }
        }
    }

    #[test]
    fn toml_mistakes_are_refused_with_the_file_name() {
        let directory = std::env::temp_dir().join(format!("system-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("bad.toml");
        std::fs::write(&path, "init = \"init\"\n[[process]]\nname = \"x\"\ncolour = 1\n").unwrap();
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("bad.toml") && message.contains("colour"), "{message}");
    }
}
