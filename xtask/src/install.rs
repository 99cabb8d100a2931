//! `cargo xtask install`: the binary and every hook file at the paths each generator reads.

use argh::FromArgs;

use crate::util::TaskResult;

/// install the binary and the initramfs hooks into a staging directory
#[derive(FromArgs)]
#[argh(subcommand, name = "install")]
pub struct InstallArgs {
    /// the staging root to install into (required)
    #[argh(option)]
    pub destdir: std::path::PathBuf,
    /// the installation prefix (default /usr)
    #[argh(option, default = "String::from(\"/usr\")")]
    pub prefix: String,
}

pub fn run(_args: InstallArgs) -> TaskResult {
    Err("install is not written yet".into())
}
