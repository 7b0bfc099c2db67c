//! One module per command.

pub(crate) mod account;
pub(crate) mod boxcmd;
pub(crate) mod client;
pub(crate) mod doctor;
pub(crate) mod image;
pub(crate) mod probe;
pub(crate) mod serve;
pub(crate) mod ws;
