//! Applying and reading the `inet hearth` table with `nft -j -f -`: every change is one
//! nft transaction, so it lands whole or not at all.
//!
//! `nft` is a child process: it acts on the namespace of the thread that starts it, so
//! these functions run on a thread that entered the root namespace ([`crate::netns::run_in`]).

use nftables::batch::Batch;
use nftables::expr::Expression;
use nftables::helper::{self, DEFAULT_NFT};
use nftables::schema::{NfListObject, NfObject};

use crate::alloc::Range;
use crate::rules::{self, HostOpts, NAT_SET, TABLE};
use crate::NetError;

fn apply(batch: Batch<'_>, what: &str) -> Result<(), NetError> {
    helper::apply_ruleset(&batch.to_nftables()).map_err(NetError::nft(what))
}

/// Whether the table exists.
pub(crate) fn table_exists() -> Result<bool, NetError> {
    let out = helper::get_current_ruleset_with_args(DEFAULT_NFT, ["list", "tables", "inet"]).map_err(NetError::nft("listing nft tables"))?;
    Ok(out.objects.iter().any(|o| matches!(o, NfObject::ListObject(NfListObject::Table(t)) if t.name == TABLE)))
}

/// The interfaces in the nat set (none if the table is missing).
pub(crate) fn nat_ifaces() -> Result<Vec<String>, NetError> {
    if !table_exists()? {
        return Ok(Vec::new());
    }
    let out = helper::get_current_ruleset_with_args(DEFAULT_NFT, ["list", "set", "inet", TABLE, NAT_SET]).map_err(NetError::nft("listing the nat set"))?;
    let set = out.objects.iter().find_map(|o| match o {
        NfObject::ListObject(NfListObject::Set(s)) if s.name == NAT_SET => Some(s),
        _ => None,
    });
    let set = set.ok_or_else(|| NetError::NftOutput(format!("no set {NAT_SET} in the answer")))?;
    let mut names = Vec::new();
    for e in set.elem.iter().flat_map(|e| e.iter()) {
        match e {
            Expression::String(s) => names.push(s.to_string()),
            other => return Err(NetError::NftOutput(format!("element {other:?} of {NAT_SET}"))),
        }
    }
    names.sort();
    Ok(names)
}

/// Installs the table, replacing any old one in the same transaction (add + delete + add:
/// the add makes the delete safe when there is none). Workstations' nat membership is kept.
pub(crate) fn init(range: &Range, opts: &HostOpts) -> Result<(), NetError> {
    let keep = nat_ifaces()?;
    let mut b = Batch::new();
    b.add(rules::table());
    b.delete(rules::table());
    for o in rules::objects(range, opts, &keep) {
        b.add(o);
    }
    apply(b, "installing the nft table inet hearth")
}

/// Removes the table (a host that stops using hearth); none there is fine.
pub(crate) fn remove() -> Result<(), NetError> {
    let mut b = Batch::new();
    b.add(rules::table());
    b.delete(rules::table());
    apply(b, "removing the nft table inet hearth")
}

/// Puts `ifname` in the nat set (already there is fine: `add`, not `create`).
pub(crate) fn nat_add(ifname: &str) -> Result<(), NetError> {
    let mut b = Batch::new();
    b.add(rules::nat_element(ifname));
    apply(b, &format!("adding {ifname} to the nat set"))
}

/// Takes `ifname` out of the nat set; not there (or no table) is fine. Add-then-delete in
/// one transaction, since a bare delete of a missing element fails.
pub(crate) fn nat_remove(ifname: &str) -> Result<(), NetError> {
    if !table_exists()? {
        return Ok(());
    }
    let mut b = Batch::new();
    b.add(rules::nat_element(ifname));
    b.delete(rules::nat_element(ifname));
    apply(b, &format!("removing {ifname} from the nat set"))
}
