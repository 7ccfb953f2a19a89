//! `certkeeper generate`: the man page and shell completions, from the
//! command line's own definition.

use crate::Cli;

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
}

/// Writes the man page or a completion script for the whole command line.
pub(crate) fn generate(what: Generated) -> i32 {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    let result = match what {
        Generated::Man => clap_mangen::Man::new(command).render(&mut out),
        Generated::Bash => {
            clap_complete::generate(
                clap_complete::Shell::Bash,
                &mut command,
                "certkeeper",
                &mut out,
            );
            Ok(())
        }
        Generated::Zsh => {
            clap_complete::generate(
                clap_complete::Shell::Zsh,
                &mut command,
                "certkeeper",
                &mut out,
            );
            Ok(())
        }
        Generated::Fish => {
            clap_complete::generate(
                clap_complete::Shell::Fish,
                &mut command,
                "certkeeper",
                &mut out,
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("certkeeper generate: {e}");
            1
        }
    }
}
