//! The build history: one JSON line per service per run in `target/xtask/history.jsonl`, and
//! `cargo xtask history [SERVICE]`, which shows recent runs and typical build times.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use camino::Utf8Path;
use serde_json::{json, Value};

use crate::cmd::build::{Ended, Outcome};
use crate::decide::plan::Plan;
use crate::decide::status::Snapshot;

/// A time as RFC 3339, in UTC, to the second.
fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

fn path(root: &Utf8Path) -> camino::Utf8PathBuf {
    crate::base::state_dir(root).join("history.jsonl")
}

/// Appends one line per planned service: what was done, why, and how it went.
pub fn append(root: &Utf8Path, tag: &str, plan: &Plan, outcomes: &[Outcome], snap: &Snapshot) -> Result<()> {
    let now = std::time::SystemTime::now();
    let mut text = String::new();
    for step in &plan.steps {
        let outcome = outcomes.iter().find(|o| o.service == step.service);
        let result = match outcome.map(|o| &o.result) {
            None => "ok",
            Some(Ended::Built) => "built",
            Some(Ended::Reused) => "reused",
            Some(Ended::Pulled) => "pulled",
            Some(Ended::Failed) => "failed",
            Some(Ended::NotStarted) => "not started",
        };
        // Each build's own start and end; a service with no work of its own, the run's end.
        let began = outcome.and_then(|o| o.began);
        let ended = began.map_or(now, |b| b + std::time::Duration::from_secs_f64(outcome.map_or(0.0, |o| o.seconds)));
        let line = json!({
            "time": rfc3339(ended),
            "started": began.map(rfc3339),
            "tag": tag,
            "service": step.service,
            "action": step.action.name(),
            "reason": outcome.filter(|o| !matches!(o.result, Ended::Built | Ended::Reused | Ended::Pulled)).map_or(step.reason.clone(), |o| o.reason.clone()),
            "digest": snap.digests.get(&step.service).and_then(|d| d.total.clone()),
            "seconds": outcome.map_or(0.0, |o| (o.seconds * 1000.0).round() / 1000.0),
            "result": result,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    append_lines(&path(root), &text)
}

/// Appends whole lines to a JSON-lines file. A last line cut off (a crash, a full disk) is
/// ended first, so that it never glues itself onto the next record.
fn append_lines(p: &Utf8Path, text: &str) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(p)
        .with_context(|| format!("cannot write {p}"))?;
    let mut last = [0u8; 1];
    let cut_off = f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] != b'\n';
    let text = if cut_off { format!("\n{text}") } else { text.to_string() };
    // Appending whole lines in one write keeps concurrent readers safe.
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {p}"))?;
    Ok(())
}

/// The records of a history file; lines that are not JSON or not UTF-8 (a cut-off or damaged
/// record) are skipped.
fn records(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// `cargo xtask history [SERVICE]`: an unknown SERVICE is a usage error.
pub fn run(root: &Utf8Path, service: Option<&str>) -> Result<i32> {
    if let Some(s) = service {
        crate::cmd::build::check_service(&crate::repo::project::Project::load(root)?, s)?;
    }
    show(root, service)
}

/// The recent runs and typical build times, of one service or all.
fn show(root: &Utf8Path, service: Option<&str>) -> Result<i32> {
    let p = path(root);
    let bytes = match std::fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no builds recorded yet ({p} does not exist)");
            return Ok(0);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {p}")),
    };
    let entries: Vec<Value> =
        records(&bytes).into_iter().filter(|v| service.is_none_or(|s| v["service"] == s)).collect();
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let work: Vec<&Value> = entries.iter().filter(|v| v["action"] != "skip").collect();
    println!("recent builds{}:", service.map_or(String::new(), |s| format!(" of {s}")));
    for v in &work[work.len().saturating_sub(20)..] {
        println!(
            "  {}  {:<14} {:<8} {:<12} {:>6.1}s  {}",
            s(v, "time"),
            s(v, "service"),
            s(v, "tag"),
            s(v, "result"),
            v["seconds"].as_f64().unwrap_or(0.0),
            s(v, "reason")
        );
    }
    let mut times: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for v in entries.iter().filter(|v| v["result"] == "built") {
        times.entry(s(v, "service")).or_default().push(v["seconds"].as_f64().unwrap_or(0.0));
    }
    println!("typical build time (median of successful builds):");
    for (svc, t) in times {
        let n = t.len();
        println!("  {svc:<14} {:>6.1}s over {n} build{}", median(t), if n == 1 { "" } else { "s" });
    }
    Ok(0)
}

/// The median: the middle value, or the mean of the two middle ones.
fn median(mut t: Vec<f64>) -> f64 {
    t.sort_by(|a, b| a.total_cmp(b));
    match t.len() {
        0 => 0.0,
        n if n % 2 == 1 => t[n / 2],
        n => (t[n / 2 - 1] + t[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cut_off_or_damaged_line_never_spoils_the_next_record() {
        let dir = crate::testutil::TempDir::new("history");
        let p = dir.path().join("target/xtask/history.jsonl");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"{\"service\":\"a\"}\n{\"service\":\"b\xff\"}\n{\"service\":\"cut").unwrap();
        super::append_lines(&p, "{\"service\":\"c\"}\n").unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert!(bytes.ends_with(b"\"cut\n{\"service\":\"c\"}\n"), "{:?}", String::from_utf8_lossy(&bytes));
        let names: Vec<String> =
            super::records(&bytes).iter().map(|v| v["service"].as_str().unwrap().to_string()).collect();
        assert_eq!(names, ["a", "c"]);
        // An empty file gets no leading blank line.
        let q = dir.path().join("empty.jsonl");
        std::fs::write(&q, "").unwrap();
        super::append_lines(&q, "{}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&q).unwrap(), "{}\n");
    }

    #[test]
    fn a_median_is_the_middle_or_the_mean_of_the_two_middles() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![10.0, 1.0]), 5.5);
        assert_eq!(super::median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(super::median(vec![7.0]), 7.0);
    }

    #[test]
    fn time_format() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_418_000);
        assert_eq!(super::rfc3339(t), "2026-12-04T21:00:00Z");
        let t = super::rfc3339(std::time::SystemTime::now());
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
