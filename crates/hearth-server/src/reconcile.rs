//! At start, the database and the workstation directories are brought into agreement: every
//! row gets its live state (a VM that died while the server was down becomes crashed), and
//! directories no row knows (a create interrupted between the two) are removed, logged.

use crate::app::App;

/// What reconciliation found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub rows: usize,
    pub running: usize,
    pub orphans_removed: Vec<String>,
}

pub fn reconcile(app: &App) -> Result<Report, crate::api::error::ApiError> {
    let mut report = Report::default();
    let rows = app.store.list()?;
    let known: std::collections::HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
    for row in rows {
        let row = app.refresh(row)?;
        report.rows += 1;
        if row.state == "running" || row.state == "paused" {
            report.running += 1;
        }
    }
    for id in app.runtime.ids()? {
        if !known.contains(&id) {
            tracing::warn!(workstation = %id, "removing a workstation directory no record knows");
            if let Ok(ws) = app.runtime.get(&id) {
                ws.delete()?;
            }
            report.orphans_removed.push(id);
        }
    }
    Ok(report)
}
