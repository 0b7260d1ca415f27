//! The key that authenticates a database's caches (snapshots, sync marks;
//! issue 25, finding 2). It is kept outside the database's directory, so that
//! whoever can write there cannot forge a cache: a forged one fails its MAC
//! and is a miss.
//!
//! A key is named by the database's id, a random id kept in the database
//! (`cache-id`), rather than by its path: a copy (whatif's scratch database,
//! a moved directory) keeps a key and its caches, and a path reused by
//! another database never finds the old one's key. Someone who rewrites the
//! id only makes every cache a miss (the caches, and the binding to the
//! log's hashes, are still checked under whatever key the id names).

use std::path::{Path, PathBuf};

/// Where a store finds the key that authenticates its caches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CacheKeys {
    /// One random key for the process: caches outlive no process (temporary
    /// stores, tests, other programs using the library).
    #[default]
    Process,
    /// The database's key in this directory, outside the database (the CLI:
    /// `USERTRAIL_KEY_DIR`, else the user's config directory).
    Dir(PathBuf),
}

/// A key, or why there is none (every cache is then a miss, and none is written).
pub(crate) type Key = Result<[u8; 32], String>;

/// The file, in a database's directory, that holds its id.
pub const ID_FILE: &str = "cache-id";

/// The process's own key.
pub(crate) fn process_key() -> Key {
    static KEY: std::sync::OnceLock<Key> = std::sync::OnceLock::new();
    KEY.get_or_init(random).clone()
}

fn random() -> Key {
    let mut key = [0; 32];
    getrandom::fill(&mut key).map_err(|e| format!("the OS's random numbers failed: {e}"))?;
    Ok(key)
}

/// The key of the database at `db`, kept in `dir`, and whether it was made
/// now (a new key means no cache written before can be checked again). An
/// error is the database's directory failing; a key that cannot be read or
/// made is a `Key` error.
pub(crate) fn database_key(db: &Path, dir: &Path) -> std::io::Result<(Key, bool)> {
    Ok(key_named(&database_id(db)?, dir))
}

/// The key of the database whose id is `id`, kept in `dir`, and whether it
/// was made now; a key that cannot be read or made is a `Key` error.
pub(crate) fn key_named(id: &str, dir: &Path) -> (Key, bool) {
    let path = dir.join(id);
    match read_key(&path) {
        Ok(key) => return (Ok(key), false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return (Err(format!("the cache key {} cannot be used: {e}", path.display())), false),
    }
    match make_key(dir, id) {
        Ok(key) => (Ok(key), true),
        Err(e) => (Err(format!("no cache key could be made in {}: {e}", dir.display())), false),
    }
}

/// A new database id: 32 hex digits, random.
pub(crate) fn new_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(hex::encode(bytes))
}

/// Whether `id` is a database id as [`new_id`] makes them (and so a safe file name).
pub(crate) fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A key file: 32 bytes that only its owner may read (one others can read
/// authenticates nothing).
fn read_key(path: &Path) -> std::io::Result<[u8; 32]> {
    // Neither the key nor its directory is followed through a link: one
    // put there would hand the key's choice to whoever put it.
    for place in [Some(path), path.parent()].into_iter().flatten() {
        if std::fs::symlink_metadata(place)?.file_type().is_symlink() {
            return Err(std::io::Error::other(format!("{} is a symbolic link", place.display())));
        }
    }
    let bytes = std::fs::read(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(std::io::Error::other(format!("its mode is {:o}, not 600", mode & 0o777)));
        }
    }
    bytes.try_into().map_err(|_| std::io::Error::other("it does not hold 32 bytes"))
}

/// Makes the key `id` in `dir` (0700), as a complete 0600 file: written
/// aside, then linked into place, so two processes making it at once agree
/// on the one that got there first.
fn make_key(dir: &Path, id: &str) -> std::io::Result<[u8; 32]> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let key = random().map_err(std::io::Error::other)?;
    let aside = dir.join(format!(".{id}.{}.tmp", std::process::id()));
    write_private(&aside, &key)?;
    let linked = std::fs::hard_link(&aside, dir.join(id));
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key(&dir.join(id)),
        Err(e) => Err(e),
    }
}

/// Writes a new file readable by its owner only, whatever the umask.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The database's id (32 hex digits), made if it has none or holds
/// something else: its caches then become misses, which is all a lost id costs.
fn database_id(db: &Path) -> std::io::Result<String> {
    let path = db.join(ID_FILE);
    let read = std::fs::File::open(&path).and_then(|file| {
        // An id is 32 characters: a huge file in its place is read no further.
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, 64), &mut text).map(|_| text)
    });
    match read {
        Ok(id) if is_id(&id) => return Ok(id),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.kind() == std::io::ErrorKind::InvalidData => {
        }
        Err(e) => return Err(e),
    }
    let id = new_id()?;
    let aside = db.join(format!(".{ID_FILE}.tmp"));
    write_private(&aside, id.as_bytes())?;
    std::fs::rename(&aside, &path)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_private_and_found_again_by_the_database_id() {
        let (db, keys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dir = keys.path().join("usertrail").join("keys");
        let (first, new) = database_key(db.path(), &dir).unwrap();
        assert!(new && first.is_ok());
        let (again, new) = database_key(db.path(), &dir).unwrap();
        assert!(!new);
        assert_eq!(again, first, "the same database finds its key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            let id = std::fs::read_to_string(db.path().join(ID_FILE)).unwrap();
            assert_eq!((mode(&dir), mode(&dir.join(&id))), (0o700, 0o600));
            // A key others can read authenticates nothing.
            std::fs::set_permissions(dir.join(&id), std::fs::Permissions::from_mode(0o644)).unwrap();
            let (loose, new) = database_key(db.path(), &dir).unwrap();
            assert!(!new && loose.unwrap_err().contains("not 600"));
        }
        let other = tempfile::tempdir().unwrap();
        let (theirs, _) = database_key(other.path(), &dir).unwrap();
        assert_ne!(theirs.unwrap(), first.unwrap(), "another database, another key");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_or_key_directory_that_is_a_symlink_is_not_used() {
        let (db, keys, elsewhere) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dir = keys.path().join("keys");
        let (key, _) = database_key(db.path(), &dir).unwrap();
        assert!(key.is_ok());
        let id = std::fs::read_to_string(db.path().join(ID_FILE)).unwrap();
        // The key file replaced by a link to a key someone else chose.
        let planted = elsewhere.path().join("planted");
        write_private(&planted, &[7; 32]).unwrap();
        std::fs::remove_file(dir.join(&id)).unwrap();
        std::os::unix::fs::symlink(&planted, dir.join(&id)).unwrap();
        let (key, made) = database_key(db.path(), &dir).unwrap();
        assert!(!made && key.is_err_and(|why| why.contains("symbolic link")));
        // The directory itself a link.
        let linked = keys.path().join("linked");
        std::os::unix::fs::symlink(elsewhere.path(), &linked).unwrap();
        std::fs::copy(&planted, elsewhere.path().join(&id)).unwrap();
        let (key, _) = database_key(db.path(), &linked).unwrap();
        assert!(key.is_err_and(|why| why.contains("symbolic link")));
    }

    #[test]
    fn a_damaged_id_is_replaced_and_its_database_gets_a_new_key() {
        let (db, keys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (first, _) = database_key(db.path(), keys.path()).unwrap();
        std::fs::write(db.path().join(ID_FILE), "../../etc/passwd").unwrap();
        let (second, new) = database_key(db.path(), keys.path()).unwrap();
        assert!(new);
        assert_ne!(second.unwrap(), first.unwrap());
        assert_eq!(
            std::fs::read_dir(keys.path()).unwrap().count(),
            2,
            "nothing written outside the key directory"
        );
    }
}
