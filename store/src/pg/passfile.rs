//! The password libpq would use when a URL carries none: `PGPASSWORD`, else
//! the first line of the password file (`PGPASSFILE`, else `~/.pgpass`, on
//! Windows `%APPDATA%\postgresql\pgpass.conf`) that matches the host, port,
//! database and user. A file that group or others may read is ignored, as
//! libpq ignores it, and said so when the server then refuses the login.

use std::path::{Path, PathBuf};

use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// The password for `config`'s first host, if the environment or the
/// password file gives one; `Err` names a password file left unread.
pub(super) fn password(config: &Config) -> Result<Option<Vec<u8>>, String> {
    if let Some(given) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
        return Ok(Some(given.into_encoded_bytes()));
    }
    let Some(text) = passfile().map(|file| read_private(&file)).transpose()?.flatten() else {
        return Ok(None);
    };
    // libpq's defaults: a socket in its default directory (Debian's), or no
    // host, is `localhost`; the database is the user's name.
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(dir)) if dir != Path::new("/var/run/postgresql") => dir.display().to_string(),
        _ => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or_default();
    let database = config.get_dbname().unwrap_or(user);
    Ok(lookup(&text, [&host, &port, database, user]).map(String::into_bytes))
}

/// `PGPASSFILE`, else libpq's default place.
fn passfile() -> Option<PathBuf> {
    let set = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    #[cfg(windows)]
    let default = set("APPDATA").map(|data| data.join("postgresql").join("pgpass.conf"));
    #[cfg(not(windows))]
    let default = set("HOME").map(|home| home.join(".pgpass"));
    set("PGPASSFILE").or(default)
}

/// The file's text (none if there is no file), refused if it is not a
/// plain file or anyone but its owner may read or write it.
fn read_private(path: &Path) -> Result<Option<String>, String> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(None) };
    let unread = |why: &str| Err(format!("the password file {} was not read: {why}", path.display()));
    if !meta.is_file() {
        return unread("it is not a plain file");
    }
    #[cfg(unix)]
    if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
        return unread("group or others may read it (chmod 600 it)");
    }
    std::fs::read_to_string(path).map(Some).or_else(|e| unread(&e.to_string()))
}

/// The password of the first line `host:port:database:username:password`
/// whose first four fields match `want` (`*` matches anything; `\` makes
/// the next character plain, `\:` a colon of the field).
pub(super) fn lookup(text: &str, want: [&str; 4]) -> Option<String> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let mut fields = Vec::with_capacity(5);
        let (mut field, mut plain, mut chars) = (String::new(), false, line.chars());
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    field.extend(chars.next());
                    plain = true;
                }
                ':' if fields.len() < 4 => {
                    // `*` matches anything; `\*` only a star.
                    let wildcard = field == "*" && !plain;
                    fields.push((std::mem::take(&mut field), wildcard));
                    plain = false;
                }
                c => field.push(c),
            }
        }
        let matched = fields.len() == 4 && fields.iter().zip(want).all(|((f, any), w)| *any || f == w);
        matched.then_some(field)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANT: [&str; 4] = ["db.example.com", "5432", "audit", "writer"];

    #[test]
    fn the_first_line_that_matches_gives_the_password() {
        let text = "# a comment:*:*:*:no\n\
                    other.example.com:5432:audit:writer:not this host\n\
                    db.example.com:5433:audit:writer:not this port\n\
                    db.example.com:5432:*:writer:first\n\
                    *:*:*:*:second\n";
        assert_eq!(lookup(text, WANT).as_deref(), Some("first"));
        assert_eq!(lookup(text, ["x", "1", "y", "z"]).as_deref(), Some("second"));
        assert_eq!(lookup("db.example.com:5432:audit:writer\n", WANT), None, "four fields: no password");
        assert_eq!(lookup("", WANT), None);
    }

    #[test]
    fn a_backslash_makes_colons_backslashes_and_stars_plain() {
        let text = "db.example.com:5432:audit:writer:pa\\:ss\\\\word:with colons\n";
        assert_eq!(lookup(text, WANT).as_deref(), Some("pa:ss\\word:with colons"));
        let socket = "/tmp/odd\\:dir:5432:audit:writer:s3cret";
        assert_eq!(lookup(socket, ["/tmp/odd:dir", "5432", "audit", "writer"]).as_deref(), Some("s3cret"));
        assert_eq!(lookup("\\*:*:*:*:star", WANT), None, "an escaped star is a star, not any host");
        assert_eq!(lookup("\\*:*:*:*:star", ["*", "1", "d", "u"]).as_deref(), Some("star"));
        assert_eq!(lookup("db.example.com:5432:audit:writer:crlf\r\n", WANT).as_deref(), Some("crlf"));
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_may_read_is_ignored_as_libpq_ignores_it_and_said_so() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:secret\n").unwrap();
        for (mode, read) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            match read_private(&file) {
                Ok(text) => assert!(read && text.as_deref() == Some("*:*:*:*:secret\n"), "mode {mode:o}"),
                Err(why) => {
                    assert!(!read && why.contains("group or others may read it"), "mode {mode:o}: {why}")
                }
            }
        }
        let not_a_file = read_private(dir.path()).unwrap_err();
        assert!(not_a_file.ends_with("was not read: it is not a plain file"), "{not_a_file}");
        assert_eq!(read_private(&dir.path().join("absent")), Ok(None), "no file, nothing to say");
    }
}
