//! The one `-w/--write-out` of every command that reports; each command accepts its subset.

use crate::error::BootError;

/// How a command writes its result on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// etcdctl's default: lines for people.
    Simple,
    /// A table (box drawing where etcdctl uses it), for people.
    Table,
    /// One JSON document, for programs.
    Json,
    /// Prometheus text exposition (node_exporter's textfile collector).
    Prometheus,
    /// One Nagios plugin line.
    Nagios,
}

impl Format {
    /// This format when `command` writes it; otherwise a refusal naming the ones it does.
    pub fn for_command(self, command: &str, accepted: &[Format]) -> Result<Format, BootError> {
        if accepted.contains(&self) {
            return Ok(self);
        }
        let names: Vec<&str> = accepted.iter().map(|f| f.name()).collect();
        Err(BootError::BadArgument { flag: format!("-w {}", self.name()), reason: format!("{command} writes {}", names.join(", ")) })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Table => "table",
            Format::Json => "json",
            Format::Prometheus => "prometheus",
            Format::Nagios => "nagios",
        }
    }

    /// etcdctl-lite's renderers' format (table, json, else simple).
    pub fn etcdctl(self) -> etcdctl_lite::render::Format {
        match self {
            Format::Table => etcdctl_lite::render::Format::Table,
            Format::Json => etcdctl_lite::render::Format::Json,
            _ => etcdctl_lite::render::Format::Simple,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_a_command_does_not_write_is_refused_naming_the_ones_it_does() {
        assert_eq!(Format::Json.for_command("up", &[Format::Table, Format::Json]).unwrap(), Format::Json);
        let e = Format::Nagios.for_command("up", &[Format::Table, Format::Json]).unwrap_err().to_string();
        assert_eq!(e, "-w nagios: up writes table, json");
    }
}
