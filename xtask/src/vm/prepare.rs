//! What both commands (`vm-test`, `vm-run`) set up first: the host's tools, the static
//! binary, the kernel, and the staged roots the images are built from.

use std::path::{Path, PathBuf};

use super::image::Inputs;
use super::{host, kernel, qemu, stage};
use crate::util::{create_dir_all, project_root, TaskResult};

/// Everything both commands set up first.
pub struct Setup {
    pub kernel: kernel::Kernel,
    pub staged: stage::Staged,
    pub vm_dir: PathBuf,
    pub work: PathBuf,
    pub guest: PathBuf,
}

impl Setup {
    pub fn new(kernel_deb: Option<&Path>, baked_rules: &str) -> TaskResult<Setup> {
        host::ensure_tools()?;
        let vm_dir = project_root().join("target/vm");
        create_dir_all(&vm_dir)?;
        let binary = crate::build::build_static_binary()?;
        println!("binary: {}", binary.display());
        let kernel = kernel::obtain(&vm_dir.join("kernel"), kernel_deb)?;
        println!(
            "kernel: {} (release {}, booting {})",
            kernel.package,
            kernel.release,
            kernel
                .boot_image
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        );
        let staged = stage::stage(&vm_dir, baked_rules)?;
        Ok(Setup {
            kernel,
            staged,
            guest: project_root().join("xtask/guest"),
            work: vm_dir.join("work"),
            vm_dir,
        })
    }

    /// The kernel file QEMU boots under `firmware`.
    pub fn kernel_for(&self, firmware: qemu::Firmware) -> PathBuf {
        match firmware {
            qemu::Firmware::SeaBios => self.kernel.boot_image.clone(),
            qemu::Firmware::Uefi => self.kernel.efi_image(),
        }
    }

    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            kernel: &self.kernel,
            stage: &self.staged.stage,
            stage_baked: &self.staged.stage_baked,
            reporter: &self.staged.reporter,
            guest: &self.guest,
            work: &self.work,
        }
    }
}
