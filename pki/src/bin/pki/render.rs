//! Rendering of `pki` results: data on stdout, as a table or JSON.

use pki::bundle::{FileReport, IssueReport};
use pki::files::Outcome;
use std::path::Path;

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Created => "created",
        Outcome::Replaced => "replaced",
        Outcome::Unchanged => "kept",
    }
}

pub fn files(files: &[FileReport], json: bool) -> Result<(), Box<dyn std::error::Error>> {
    if json {
        let rows: Vec<_> = files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path.display().to_string(),
                    "mode": format!("{:04o}", f.mode),
                    "result": outcome_word(f.outcome),
                    "what": f.what,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["FILE", "MODE", "RESULT", "CONTENT"]);
    for f in files {
        table.add_row([f.path.display().to_string(), format!("{:04o}", f.mode), outcome_word(f.outcome).into(), f.what.clone()]);
    }
    println!("{}", table.trim_fmt());
    Ok(())
}

pub fn issue_report(report: &IssueReport, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    files(&report.files, json)
}

pub fn certinfo(path: &Path, json: bool, headed: bool) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = pki::files::read_input(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let what = path.display().to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match pki::inspect::inspect(&bytes, &what)? {
        pki::inspect::Inspected::Cert(info) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                if headed {
                    println!("== {what}");
                }
                print!("{}", pki::inspect::render_cert(&info, now));
            }
        }
        pki::inspect::Inspected::Csr(info) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                if headed {
                    println!("== {what}");
                }
                print!("{}", pki::inspect::render_csr(&info));
            }
        }
    }
    Ok(())
}
