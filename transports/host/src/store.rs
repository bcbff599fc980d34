//! A persistent [`Store`] in a redb database file.
//!
//! The file holds two tables: `data`, the byte keys and values the core writes, and `meta`,
//! which records the store's format version ([`FORMAT_VERSION`]). Every [`Store::commit`] is one
//! redb write transaction committed with [`Durability::Immediate`], so it is atomic and on disk
//! (fsync) when it returns `Ok`.
//!
//! Opening is careful with files it did not expect: a file that is not a redb database, is
//! damaged, or was written by a newer format is refused before anything is written to it (see
//! [`RedbStore::open`]).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use authenticator_core::platform::{Store, StoreError, Write};
use redb::{
    Builder, Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase, StorageError,
    TableDefinition, TableError,
};

/// The format version this build writes and understands.
pub const FORMAT_VERSION: u64 = 1;

/// The core's keys and values.
const DATA: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("data");
/// Store-level metadata: for now only [`FORMAT_VERSION_KEY`].
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
/// The key in [`META`] holding the format version.
const FORMAT_VERSION_KEY: &str = "format_version";

/// Why [`RedbStore::open`] refused a file.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process, or another [`RedbStore`] in this process, has the file open.
    InUse {
        /// The store file.
        path: PathBuf,
    },
    /// The file is not a redb database, is damaged, or is a redb database that is not a
    /// fidelio store.
    NotAStore {
        /// The store file.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// The file was written by a newer version of fidelio, in a format this build does not
    /// understand.
    TooNew {
        /// The store file.
        path: PathBuf,
        /// The format version found in the file.
        found: u64,
        /// The newest format version this build understands ([`FORMAT_VERSION`]).
        supported: u64,
    },
    /// The file could not be read or written.
    Io {
        /// The store file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// redb reported another failure.
    Database {
        /// The store file.
        path: PathBuf,
        /// redb's description of the failure.
        detail: String,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InUse { path } => write!(
                f,
                "store file {} is already in use by another fidelio process",
                path.display()
            ),
            Self::NotAStore { path, detail } => write!(
                f,
                "{} is not a usable fidelio store ({detail}); it was left as it is",
                path.display()
            ),
            Self::TooNew {
                path,
                found,
                supported,
            } => write!(
                f,
                "store file {} has format version {found}, newer than this build understands \
                 ({supported}); it was left as it is",
                path.display()
            ),
            Self::Io { path, source } => {
                write!(f, "cannot access store file {}: {source}", path.display())
            }
            Self::Database { path, detail } => {
                write!(f, "cannot open store file {}: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A [`Store`] kept in a redb database file.
///
/// The file is locked while the store is open; dropping the store closes the database and
/// releases the lock.
#[derive(Debug)]
pub struct RedbStore {
    path: PathBuf,
    /// `None` only after an I/O failure left redb unusable and reopening failed too; the next
    /// [`Store::commit`] tries again.
    db: Option<Database>,
}

impl RedbStore {
    /// Opens the store at `path`, creating it if the file does not exist (or is empty).
    ///
    /// An existing file is first examined through a read-only open, which writes nothing: a
    /// file that is not a redb database, is not a fidelio store, or has a format version newer
    /// than [`FORMAT_VERSION`] is refused and left byte-for-byte as it was. The file is then
    /// opened for writing with redb's integrity check, which verifies the checksum of every page
    /// (reading the whole file) and refuses a damaged file before it writes anything. The one
    /// exception is a file left by a crash: redb must repair it before its contents can be
    /// read, so its format is checked after that (data-preserving) repair.
    ///
    /// A file that another process, or another `RedbStore` in this process, has open is refused
    /// with [`OpenError::InUse`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let existing = match std::fs::metadata(&path) {
            Ok(metadata) => metadata.len() > 0,
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(source) => return Err(OpenError::Io { path, source }),
        };
        let db = if existing {
            catch_panic(&path, || probe(&path))?;
            catch_panic(&path, || open_existing(&path))?
        } else {
            // `Builder::create` never truncates: it initialises an empty file and otherwise opens
            // (and validates) whatever is there, so a file that appeared meanwhile is safe.
            Builder::new()
                .create(&path)
                .map_err(|err| open_error(&path, err))?
        };
        initialise_or_check(&db, &path)?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Self { path, db: Some(db) })
    }

    /// The path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self, op: &'static str) -> Result<&Database, StoreError> {
        self.db.as_ref().ok_or_else(|| {
            tracing::error!(
                path = %self.path.display(),
                op,
                "store unavailable: it failed earlier and could not be reopened"
            );
            StoreError::Failed
        })
    }

    /// After an I/O failure redb refuses every later operation until the database is closed and
    /// opened again (which recovers the last committed state); do that now so that the store
    /// works again once the cause (a full disk, say) is gone.
    fn reopen(&mut self) {
        // Close first: the open handle holds the file lock.
        self.db = None;
        let reopened = catch_panic(&self.path, || open_existing(&self.path)).and_then(|db| {
            initialise_or_check(&db, &self.path)?;
            Ok(db)
        });
        match reopened {
            Ok(db) => {
                tracing::info!(path = %self.path.display(), "store reopened after an I/O failure");
                self.db = Some(db);
            }
            Err(err) => tracing::error!(error = %err, "store could not be reopened"),
        }
    }
}

impl Store for RedbStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db("get")?;
        let read = || -> Result<Option<Vec<u8>>, redb::Error> {
            let txn = db.begin_read()?;
            let table = txn.open_table(DATA)?;
            Ok(table.get(key)?.map(|value| value.value().to_vec()))
        };
        read().map_err(|err| self.fail("get", err).0)
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let db = self.db("scan_prefix")?;
        let mut scan = || -> Result<(), redb::Error> {
            let txn = db.begin_read()?;
            let table = txn.open_table(DATA)?;
            // Keys are ordered, so the keys with the prefix are contiguous from `prefix` on:
            // stop at the first key without it.
            for entry in table.range(prefix..)? {
                let (key, value) = entry?;
                if !key.value().starts_with(prefix) || !visit(key.value(), value.value()) {
                    break;
                }
            }
            Ok(())
        };
        scan().map_err(|err| self.fail("scan_prefix", err).0)
    }

    fn commit(&mut self, batch: &[Write<'_>]) -> Result<(), StoreError> {
        if self.db.is_none() {
            self.reopen();
        }
        let db = self.db("commit")?;
        let apply = || -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            // The default, stated: the commit is on disk (fsync) when it returns.
            txn.set_durability(Durability::Immediate)?;
            {
                let mut table = txn.open_table(DATA)?;
                for write in batch {
                    match *write {
                        Write::Put(key, value) => {
                            table.insert(key, value)?;
                        }
                        Write::Delete(key) => {
                            table.remove(key)?;
                        }
                        Write::Clear => table.retain(|_, _| false)?,
                    }
                }
            }
            // An early return above drops `txn`, which aborts it: nothing is written.
            txn.commit()?;
            Ok(())
        };
        apply().map_err(|err| {
            let (error, reopen) = self.fail("commit", err);
            if reopen {
                self.reopen();
            }
            error
        })
    }
}

impl RedbStore {
    /// Logs `err` and classifies it: the [`StoreError`] for the core, and whether redb must be
    /// reopened before it can be used again.
    fn fail(&self, op: &'static str, err: redb::Error) -> (StoreError, bool) {
        tracing::error!(path = %self.path.display(), op, error = %err, "store operation failed");
        match &err {
            redb::Error::Io(io) if is_out_of_space(io) => (StoreError::Full, true),
            redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed => {
                (StoreError::Failed, true)
            }
            _ => (StoreError::Failed, false),
        }
    }
}

fn is_out_of_space(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// What the `meta` table says about a database.
enum Format {
    /// No tables at all: a database just created (possibly by an open that crashed before it
    /// could record the format).
    Fresh,
    /// A fidelio store of this format version.
    Version(u64),
}

/// Runs one stage of opening an existing file, turning a panic into [`OpenError::NotAStore`].
///
/// redb trusts the files it wrote and may panic on a file damaged outside it (an `unreachable!`
/// on a page of an unknown kind, say) where it would ideally return an error. A damaged file
/// must not take the daemon down with a backtrace: refuse it like any other damaged file.
fn catch_panic<T>(
    path: &Path,
    stage: impl FnOnce() -> Result<T, OpenError>,
) -> Result<T, OpenError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(stage)).unwrap_or_else(|_| {
        Err(OpenError::NotAStore {
            path: path.to_path_buf(),
            detail: "damaged: redb panicked while reading it".into(),
        })
    })
}

/// Examines an existing file without writing to it.
fn probe(path: &Path) -> Result<(), OpenError> {
    let db = match Builder::new().open_read_only(path) {
        Ok(db) => db,
        // A file left by a crash: a read-only open will not repair it, and its tables cannot
        // be read until it is. The writable open repairs it and the format is checked then.
        Err(DatabaseError::RepairAborted) => {
            tracing::warn!(
                path = %path.display(),
                "store was not closed cleanly; redb will repair it"
            );
            return Ok(());
        }
        Err(err) => return Err(open_error(path, err)),
    };
    let txn = db
        .begin_read()
        .map_err(|err| database_error(path, err.into()))?;
    let format = read_format(&txn, path)?;
    check_version(&format, path)?;
    drop(txn);
    db.close().map_err(|err| open_error(path, err))
}

/// Opens an existing database for writing, verifying every page first.
fn open_existing(path: &Path) -> Result<Database, OpenError> {
    // `Builder::open`, unlike `create`, never initialises anything. The integrity check costs
    // a read of the whole file (about 0.1 s for 100,000 credentials) and turns damage into an
    // error at open instead of a failure, or a redb panic, in the middle of a ceremony.
    Builder::new()
        .set_check_integrity_on_open(true)
        .open(path)
        .map_err(|err| open_error(path, err))
}

/// Records the format version in a fresh database, or checks it in an existing one.
fn initialise_or_check(db: &Database, path: &Path) -> Result<(), OpenError> {
    let txn = db
        .begin_read()
        .map_err(|err| database_error(path, err.into()))?;
    let format = read_format(&txn, path)?;
    drop(txn);
    check_version(&format, path)?;
    if matches!(format, Format::Version(_)) {
        return Ok(());
    }
    let initialise = || -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.open_table(DATA)?;
        txn.open_table(META)?
            .insert(FORMAT_VERSION_KEY, FORMAT_VERSION)?;
        txn.commit()?;
        Ok(())
    };
    initialise().map_err(|err| database_error(path, err))?;
    tracing::info!(path = %path.display(), version = FORMAT_VERSION, "new store created");
    Ok(())
}

fn read_format(txn: &ReadTransaction, path: &Path) -> Result<Format, OpenError> {
    let not_a_store = |detail: String| OpenError::NotAStore {
        path: path.to_path_buf(),
        detail,
    };
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            let any_table = txn
                .list_tables()
                .map_err(|err| database_error(path, err.into()))?
                .next()
                .is_some();
            return if any_table {
                Err(not_a_store(
                    "a redb database without fidelio's meta table".into(),
                ))
            } else {
                Ok(Format::Fresh)
            };
        }
        Err(TableError::Storage(err)) => return Err(storage_error(path, err)),
        Err(err) => return Err(not_a_store(format!("unexpected meta table: {err}"))),
    };
    match meta.get(FORMAT_VERSION_KEY) {
        Ok(Some(version)) => Ok(Format::Version(version.value())),
        Ok(None) => Err(not_a_store("no format version in the meta table".into())),
        Err(err) => Err(storage_error(path, err)),
    }
}

fn check_version(format: &Format, path: &Path) -> Result<(), OpenError> {
    match *format {
        Format::Fresh | Format::Version(FORMAT_VERSION) => Ok(()),
        Format::Version(found) if found > FORMAT_VERSION => Err(OpenError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        }),
        Format::Version(found) => Err(OpenError::NotAStore {
            path: path.to_path_buf(),
            detail: format!("unknown format version {found}"),
        }),
    }
}

fn open_error(path: &Path, err: DatabaseError) -> OpenError {
    match err {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            OpenError::InUse {
                path: path.to_path_buf(),
            }
        }
        DatabaseError::UpgradeRequired(version) => OpenError::NotAStore {
            path: path.to_path_buf(),
            detail: format!("redb file format {version}, which needs a manual upgrade"),
        },
        DatabaseError::Storage(err) => storage_error(path, err),
        err => database_error(path, err.into()),
    }
}

fn storage_error(path: &Path, err: StorageError) -> OpenError {
    match err {
        // redb's "not a redb database" (bad magic number, empty file given to `open`).
        StorageError::Io(err) if err.kind() == io::ErrorKind::InvalidData => OpenError::NotAStore {
            path: path.to_path_buf(),
            detail: err.to_string(),
        },
        // Shorter than a redb header.
        StorageError::Io(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            OpenError::NotAStore {
                path: path.to_path_buf(),
                detail: "too short to be a redb database".into(),
            }
        }
        StorageError::Io(source) => OpenError::Io {
            path: path.to_path_buf(),
            source,
        },
        StorageError::Corrupted(detail) => OpenError::NotAStore {
            path: path.to_path_buf(),
            detail: format!("damaged: {detail}"),
        },
        err => database_error(path, err.into()),
    }
}

fn database_error(path: &Path, err: redb::Error) -> OpenError {
    match err {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => OpenError::InUse {
            path: path.to_path_buf(),
        },
        redb::Error::Io(source) => OpenError::Io {
            path: path.to_path_buf(),
            source,
        },
        redb::Error::Corrupted(detail) => OpenError::NotAStore {
            path: path.to_path_buf(),
            detail: format!("damaged: {detail}"),
        },
        err => OpenError::Database {
            path: path.to_path_buf(),
            detail: err.to_string(),
        },
    }
}
