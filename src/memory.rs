//! How much memory this process may use, and the byte sizes people write (`8G`, `512MiB`):
//! the default of `--max-job-memory` comes from here. A shared helper like `clock`: it
//! imports no room.

/// The memory this process may use: its cgroup's limit where it has one (a container's
/// `resources.limits.memory`), else the machine's physical memory. `None` where neither can
/// be read (not Linux).
pub fn available() -> Option<u64> {
    let physical = physical();
    match (cgroup_limit(), physical) {
        (Some(c), Some(p)) => Some(c.min(p)),
        (c, p) => c.or(p),
    }
}

/// The default budget of one training job: three quarters of what the process may use (the
/// rest is the server's: its caches, uploads and predictions), shared by `slots` jobs that
/// train at once. Without a readable total, 4 GiB a job.
pub fn default_job_limit(slots: usize) -> u64 {
    match available() {
        Some(total) => total / 4 * 3 / slots.max(1) as u64,
        None => 4 << 30,
    }
}

fn physical() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// cgroup v2's `memory.max`, else v1's `memory.limit_in_bytes`; "max" and v1's huge "no limit"
/// value are no limit.
fn cgroup_limit() -> Option<u64> {
    for path in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Ok(s) = std::fs::read_to_string(path) {
            return parse_limit(&s);
        }
    }
    None
}

fn parse_limit(s: &str) -> Option<u64> {
    let v: u64 = s.trim().parse().ok()?;
    // cgroup v1 writes "no limit" as the largest page-aligned i64.
    (v < (1 << 60)).then_some(v)
}

/// The peak resident memory of this process so far (`VmHWM`), in bytes.
pub fn peak_resident() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A byte size as people write it: `1073741824`, `512M`, `8G`, `8GiB`, `1.5GB` (K, M, G, T
/// count in 1024s, as memory limits do).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size in bytes (like 8G or 512M)"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
    };
    let bytes = n * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// A byte count as people read it: `1.5 GB`, `312 MB`, `900 bytes` (in 1000s, one decimal).
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} bytes"),
        1_000..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3X").is_err());
        assert_eq!(human(160_092_802_512), "160.1 GB");
        assert_eq!(human(999), "999 bytes");
    }

    #[test]
    fn a_cgroup_without_a_limit_is_no_limit() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("2147483648\n"), Some(2 << 30));
    }

    #[test]
    fn this_machine_has_memory_and_a_job_budget() {
        let total = available().expect("Linux has /proc/meminfo");
        assert!(total > 0);
        assert!(default_job_limit(2) <= total / 2);
        assert!(peak_resident().is_some());
    }
}
