//! Plain aligned tables for terminal output.

pub(crate) fn print(headers: &[&str], rows: &[Vec<String>]) {
    let _ = write(&mut std::io::stdout(), headers, rows);
}

/// Writes the table to `out` (stderr, where stdout carries something else).
pub(crate) fn write(out: &mut dyn std::io::Write, headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", padded.join("  ").trim_end())
    };
    line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>())?;
    for row in rows {
        line(row)?;
    }
    Ok(())
}

pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A unix time in milliseconds as a distance from now: `5 min ago`, `in 30 d`.
pub(crate) fn relative(ms: u64) -> String {
    let now = hearth_proto::unix_ms_now();
    let span = |secs: u64| match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    };
    // Within a second of now (clocks, rounding) is the past.
    if ms > now + 1000 {
        format!("in {}", span((ms - now) / 1000))
    } else {
        format!("{} ago", span(now.saturating_sub(ms) / 1000))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(3 << 30), "3.0 GiB");
    }
}
