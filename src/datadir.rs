//! The member's data directory: who this member is, the cluster secret, the admin token file,
//! and the Raft store.
//!
//! ```text
//! <data-dir>/member.json     this member's identity: format version, Raft node id, uuid, cluster id
//! <data-dir>/cluster.secret  the cluster secret, when this member generated it (mode 0600)
//! <data-dir>/admin.token     the admin API token, when this member created it (mode 0600)
//! <data-dir>/master.key      the key storage master key, when none is configured and this
//!                            member created the cluster (mode 0600; copy it to the others)
//! <data-dir>/raft/           the sled store: Raft log, state machine, snapshots
//! <data-dir>/logs/           execution output, when the log store is the local filesystem
//! <data-dir>/tmp/            inline scripts of running steps
//! ```
//!
//! Small files are written atomically (temp file, fsync, rename, fsync of the directory), so a
//! crash leaves either the old file or the new one, never half of one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Format version of `member.json`.
const IDENTITY_VERSION: u32 = 1;

pub const IDENTITY_FILE: &str = "member.json";
pub const SECRET_FILE: &str = "cluster.secret";
pub const TOKEN_FILE: &str = "admin.token";
pub const MASTER_KEY_FILE: &str = "master.key";
pub const STORE_DIR: &str = "raft";
pub const LOGS_DIR: &str = "logs";
/// Where inline scripts of running steps are written.
pub const SCRATCH_DIR: &str = "tmp";

/// Who this member is; fixed when the data dir is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub version: u32,
    /// Raft node id.
    pub node_id: u64,
    /// Public member id (Rundeck's serverUUID).
    pub uuid: String,
    /// The cluster this member belongs to, once it has created or joined one.
    pub cluster_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data dir {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("data dir {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A member's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError {
        let path = path.to_path_buf();
        move |source| DataDirError::Io { path, source }
    }

    /// True when the directory does not exist or holds nothing.
    pub fn is_empty(&self) -> Result<bool, DataDirError> {
        match fs::read_dir(&self.root) {
            Ok(mut entries) => Ok(entries.next().is_none()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(self.io(&self.root)(e)),
        }
    }

    /// Creates the directory (mode 0700) if needed.
    pub fn create(&self) -> Result<(), DataDirError> {
        fs::create_dir_all(&self.root).map_err(self.io(&self.root))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)).map_err(self.io(&self.root))
    }

    /// The identity, if this data dir has one.
    pub fn identity(&self) -> Result<Option<Identity>, DataDirError> {
        let path = self.path(IDENTITY_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&path)(e)),
        };
        let id: Identity = serde_json::from_str(&text)
            .map_err(|e| DataDirError::Invalid { path: path.clone(), message: format!("unreadable: {e}") })?;
        if id.version != IDENTITY_VERSION {
            return Err(DataDirError::Invalid {
                path,
                message: format!(
                    "format version {} is not supported (this build reads {IDENTITY_VERSION})",
                    id.version
                ),
            });
        }
        Ok(Some(id))
    }

    /// A new identity with a random node id and uuid.
    pub fn new_identity() -> Identity {
        let mut node_id = 0;
        while node_id == 0 {
            node_id = rand::random::<u64>() >> 1; // stays positive in JSON consumers using i64
        }
        Identity { version: IDENTITY_VERSION, node_id, uuid: uuid::Uuid::new_v4().to_string(), cluster_id: None }
    }

    pub fn save_identity(&self, id: &Identity) -> Result<(), DataDirError> {
        let text = serde_json::to_string_pretty(id).expect("identity serialises");
        self.write_atomic(IDENTITY_FILE, text.as_bytes(), 0o644)
    }

    /// Reads a one-line secret file, if present.
    pub fn read_secret_file(&self, name: &str) -> Result<Option<String>, DataDirError> {
        let path = self.path(name);
        match fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    /// Writes a secret file readable only by its owner.
    pub fn write_secret_file(&self, name: &str, value: &str) -> Result<(), DataDirError> {
        self.write_atomic(name, format!("{value}\n").as_bytes(), 0o600)
    }

    /// Writes `name` atomically with the given mode.
    pub fn write_atomic(&self, name: &str, data: &[u8], mode: u32) -> Result<(), DataDirError> {
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
            // The mode given to open() is filtered by the umask; set it exactly.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.root)?.sync_all()
        };
        write().map_err(self.io(&path))
    }

    /// Removes everything in the data dir: used to leave nothing half-made behind when the
    /// first start of a member fails.
    pub fn remove_all(&self) -> Result<(), DataDirError> {
        match fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(&self.root)(e)),
        }
    }
}

/// A random secret: 32 bytes, hex.
pub fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}
