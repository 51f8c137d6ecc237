//! Off-host backups on S3-compatible object storage: `s3://BUCKET/PREFIX` parsed once, the
//! endpoint, region and credentials from the standard `AWS_*` environment or `~/.aws` files, and
//! requests signed with SigV4 (rusty-s3, presigned) and sent by a blocking HTTP client (ureq).
//! An upload is always multipart, in parts read one at a time (bounded memory): the object
//! appears under its name only when the upload completes, and a failed one is aborted. It is then
//! read back whole and its SHA-256 compared with the local file's.

use crate::error::{BootError, Result};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// Parts of 8 MiB: above S3's 5 MiB minimum, and the only snapshot bytes held in memory.
pub const PART: usize = 8 << 20;
/// How long a presigned request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// `s3://BUCKET/PREFIX`: where backups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
}

impl Location {
    pub fn parse(text: &str) -> std::result::Result<Location, String> {
        let rest = text.strip_prefix("s3://").ok_or_else(|| format!("{text:?}: give s3://BUCKET/PREFIX"))?;
        crate::spec::rules::no_control(rest)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len()) && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            return Err(format!("{text:?}: {bucket:?} is not an S3 bucket name (3-63 lowercase letters, digits, '-' and '.')"));
        }
        if prefix.split('/').any(|p| p == ".." || p == ".") || prefix.starts_with('/') || prefix.contains("//") {
            return Err(format!("{text:?}: the prefix must be plain names separated by '/'"));
        }
        let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
        Ok(Location { bucket: bucket.to_string(), prefix })
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// An S3 object URL split into its location and object name (`restore s3://b/p/NAME.db`).
pub fn parse_object(text: &str) -> std::result::Result<(Location, String), String> {
    let (dir, name) = text
        .rsplit_once('/')
        .filter(|(d, n)| !n.is_empty() && d.contains("s3://") && d.len() > 5)
        .ok_or_else(|| format!("{text:?}: give s3://BUCKET/PREFIX/NAME"))?;
    let loc = Location::parse(dir).or_else(|_| Location::parse(&format!("{dir}/")))?;
    Ok((loc, name.to_string()))
}

/// The endpoint, region and credentials, as the AWS tools find them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub key: String,
    pub secret: String,
    pub token: Option<String>,
}

impl Settings {
    /// `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`; missing ones from
    /// `~/.aws/config` and `~/.aws/credentials` (profile `AWS_PROFILE`, else `default`).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> std::result::Result<Settings, String> {
        let home = env("HOME").unwrap_or_default();
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let read = |var: &str, default: &str| env(var).unwrap_or_else(|| format!("{home}/{default}"));
        let config = std::fs::read_to_string(read("AWS_CONFIG_FILE", ".aws/config")).unwrap_or_default();
        let creds = std::fs::read_to_string(read("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")).unwrap_or_default();
        let from_config = |k: &str| ini_value(&config, &profile, k, true);
        let from_creds = |k: &str| ini_value(&creds, &profile, k, false);
        let key = env("AWS_ACCESS_KEY_ID").or_else(|| from_creds("aws_access_key_id"));
        let secret = env("AWS_SECRET_ACCESS_KEY").or_else(|| from_creds("aws_secret_access_key"));
        let (Some(key), Some(secret)) = (key, secret) else {
            return Err(format!("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile [{profile}] in ~/.aws/credentials"));
        };
        Ok(Settings {
            endpoint: env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")).or_else(|| from_config("endpoint_url")),
            region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).or_else(|| from_config("region")).unwrap_or_else(|| "us-east-1".into()),
            key,
            secret,
            token: env("AWS_SESSION_TOKEN").or_else(|| from_creds("aws_session_token")),
        })
    }
}

/// `key` in `[profile]` (`[profile NAME]` in the config file, except `[default]`).
fn ini_value(text: &str, profile: &str, key: &str, config_file: bool) -> Option<String> {
    let want = if config_file && profile != "default" { format!("profile {profile}") } else { profile.to_string() };
    let mut inside = false;
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.starts_with(';')) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == want;
        } else if inside
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim().to_string()).filter(|v| !v.is_empty());
        }
    }
    None
}

/// One bucket, reached with the settings.
pub struct Store {
    bucket: Bucket,
    credentials: Credentials,
    agent: ureq::Agent,
    location: Location,
}

/// ` Code: Message` from an S3 error document (both, when the server gave them).
fn server_words(body: &str) -> String {
    let tag = |name: &str| {
        body.split(&format!("<{name}>")).nth(1).and_then(|r| r.split(&format!("</{name}>")).next()).map(|v| v.trim().chars().take(200).collect::<String>())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) if !m.is_empty() => format!(" {c}: {m}"),
        (Some(c), _) => format!(" {c}"),
        (None, _) => String::new(),
    }
}

/// `url` with `name=` (an empty query parameter) written as `name`.
fn valueless(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let pairs: Vec<&str> = query.split('&').map(|p| if p == format!("{name}=") { name } else { p }).collect();
    format!("{base}?{}", pairs.join("&"))
}

/// What an upload left on the server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shipped {
    pub url: String,
    pub bytes: u64,
    pub sha256: String,
    /// Older backups the retention removed from the prefix.
    pub deleted: Vec<String>,
}

impl Store {
    pub fn new(location: &Location, settings: &Settings) -> Result<Store> {
        let bad = |reason: String| BootError::Offsite { url: location.url(&location.prefix), reason };
        let (endpoint, style) = match &settings.endpoint {
            // an S3-compatible server: path style (its buckets need no DNS names)
            Some(e) => (e.clone(), UrlStyle::Path),
            None => (format!("https://s3.{}.amazonaws.com", settings.region), UrlStyle::VirtualHost),
        };
        let url: url::Url = endpoint.parse().map_err(|e| bad(format!("endpoint {endpoint:?}: {e}")))?;
        let bucket = Bucket::new(url, style, location.bucket.clone(), settings.region.clone()).map_err(|e| bad(format!("{e}")))?;
        let credentials = match &settings.token {
            Some(t) => Credentials::new_with_token(settings.key.clone(), settings.secret.clone(), t.clone()),
            None => Credentials::new(settings.key.clone(), settings.secret.clone()),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(300)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Store { bucket, credentials, agent, location: location.clone() })
    }

    fn fail(&self, key: &str, reason: impl std::fmt::Display) -> BootError {
        BootError::Offsite { url: self.location.url(key), reason: reason.to_string() }
    }

    /// A response's status as an error with the server's words.
    fn check(
        &self,
        key: &str,
        what: &str,
        resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut resp = resp.map_err(|e| self.fail(key, format!("{what}: {e}")))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let body = resp.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
        Err(self.fail(key, format!("{what}: HTTP {}{}", resp.status().as_u16(), server_words(&body))))
    }

    /// `POST KEY?uploads`, presigned: the subresource without a value, as the S3 API reference
    /// writes it (rusty-s3 sends `uploads=1`, which servers that match the action exactly treat
    /// as unknown). Signed over `uploads=`, SigV4's canonical form of a valueless parameter.
    fn create_multipart_url(&self, key: &str) -> String {
        let signed = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            rusty_s3::Method::Post,
            self.bucket.object_url(key),
            self.credentials.key(),
            self.credentials.secret(),
            self.credentials.token(),
            self.bucket.region(),
            SIGNED_FOR.as_secs(),
            std::iter::once(("uploads", "")),
            std::iter::empty(),
        );
        valueless(signed.as_str(), "uploads")
    }

    /// Uploads `file` as `key` in parts; the SHA-256 of what was sent, and its size.
    pub fn upload(&self, key: &str, file: &Path) -> Result<(u64, String)> {
        let resp = self.check(key, "starting the upload", self.agent.post(self.create_multipart_url(key).as_str()).send_empty())?;
        let text = read_small(resp).map_err(|e| self.fail(key, e))?;
        let upload = rusty_s3::actions::CreateMultipartUpload::parse_response(&text).map_err(|e| self.fail(key, format!("the server's answer: {e}")))?;
        let id = upload.upload_id().to_string();
        match self.send_parts(key, &id, file) {
            Ok(done) => Ok(done),
            Err(e) => {
                // no object appears under the name: the parts are dropped
                let abort = self.bucket.abort_multipart_upload(Some(&self.credentials), key, &id);
                let _ = self.agent.delete(abort.sign(SIGNED_FOR).as_str()).call();
                Err(e)
            }
        }
    }

    fn send_parts(&self, key: &str, id: &str, file: &Path) -> Result<(u64, String)> {
        let mut f = std::fs::File::open(file).map_err(crate::error::io("open", file))?;
        let mut buf = vec![0u8; PART];
        let (mut etags, mut total, mut hash) = (Vec::new(), 0u64, sha2::Sha256::new());
        loop {
            let n = read_full(&mut f, &mut buf).map_err(crate::error::io("read", file))?;
            if n == 0 && !etags.is_empty() {
                break;
            }
            let number = u16::try_from(etags.len() + 1).map_err(|_| self.fail(key, "more than 65535 parts"))?;
            let part = self.bucket.upload_part(Some(&self.credentials), key, number, id);
            let resp = self.check(key, &format!("part {number}"), self.agent.put(part.sign(SIGNED_FOR).as_str()).send(&buf[..n]))?;
            let etag =
                resp.headers().get("etag").and_then(|v| v.to_str().ok()).ok_or_else(|| self.fail(key, format!("part {number}: no ETag in the answer")))?;
            etags.push(etag.to_string());
            hash.update(&buf[..n]);
            total += n as u64;
            if n < PART {
                break;
            }
        }
        let complete = self.bucket.complete_multipart_upload(Some(&self.credentials), key, id, etags.iter().map(String::as_str));
        let url = complete.sign(SIGNED_FOR);
        let body = complete.body();
        let resp = self.check(key, "completing the upload", self.agent.post(url.as_str()).send(body.as_bytes()))?;
        // S3 may answer 200 with an error inside
        let text = read_small(resp).map_err(|e| self.fail(key, e))?;
        if text.contains("<Error>") {
            return Err(self.fail(key, format!("completing the upload: {}", text.chars().take(300).collect::<String>())));
        }
        Ok((total, hex::encode(hash.finalize())))
    }

    /// Streams the object into `to`; its size and SHA-256.
    pub fn download(&self, key: &str, to: &mut impl Write) -> Result<(u64, String)> {
        let get = self.bucket.get_object(Some(&self.credentials), key);
        let resp = self.check(key, "reading it", self.agent.get(get.sign(SIGNED_FOR).as_str()).call())?;
        let mut reader = resp.into_body().into_with_config().limit(u64::MAX).reader();
        let (mut buf, mut total, mut hash) = (vec![0u8; 1 << 20], 0u64, sha2::Sha256::new());
        loop {
            let n = reader.read(&mut buf).map_err(|e| self.fail(key, format!("reading it: {e}")))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            to.write_all(&buf[..n]).map_err(|e| self.fail(key, format!("writing it here: {e}")))?;
            total += n as u64;
        }
        Ok((total, hex::encode(hash.finalize())))
    }

    /// Every key under the location's prefix.
    pub fn list(&self) -> Result<Vec<String>> {
        let (mut keys, mut token) = (Vec::new(), None::<String>);
        loop {
            let mut list = self.bucket.list_objects_v2(Some(&self.credentials));
            list.with_prefix(self.location.prefix.as_str());
            if let Some(t) = &token {
                list.with_continuation_token(t.as_str());
            }
            let resp = self.check(&self.location.prefix, "listing", self.agent.get(list.sign(SIGNED_FOR).as_str()).call())?;
            let text = read_small(resp).map_err(|e| self.fail(&self.location.prefix, e))?;
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|e| self.fail(&self.location.prefix, format!("the listing: {e}")))?;
            keys.extend(page.contents.into_iter().map(|c| c.key));
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    /// The names of the objects directly under the location's prefix (none below a further `/`).
    pub fn names(&self) -> Result<Vec<String>> {
        let prefix = &self.location.prefix;
        Ok(self.list()?.into_iter().filter_map(|k| k.strip_prefix(prefix.as_str()).filter(|n| !n.contains('/')).map(String::from)).collect())
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        let del = self.bucket.delete_object(Some(&self.credentials), key);
        self.check(key, "deleting it", self.agent.delete(del.sign(SIGNED_FOR).as_str()).call()).map(|_| ())
    }
}

/// Reads up to `buf.len()` bytes (less only at the end of the file).
fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A small XML answer, bounded.
fn read_small(mut resp: ureq::http::Response<ureq::Body>) -> std::result::Result<String, String> {
    resp.body_mut().with_config().limit(16 << 20).read_to_string().map_err(|e| format!("reading the answer: {e}"))
}

/// `backup --to`: uploads the snapshot just written at `local`, reads it back and compares, then
/// keeps the newest `keep` of this cluster's backups under the prefix (only names `backup` makes).
pub fn ship(location: &Location, settings: &Settings, local: &Path, cluster: &str, keep: Option<usize>) -> Result<Shipped> {
    let store = Store::new(location, settings)?;
    let name = local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let key = location.key(&name);
    let (bytes, sha256) = store.upload(&key, local)?;
    let (got, got_sha) = store.download(&key, &mut std::io::sink())?;
    if got != bytes || got_sha != sha256 {
        return Err(store.fail(&key, format!("read back {got} bytes with SHA-256 {got_sha}, sent {bytes} with {sha256}")));
    }
    let mut deleted = Vec::new();
    if let Some(keep) = keep {
        let mut ours: Vec<String> = store
            .list()?
            .into_iter()
            .filter(|k| k.strip_prefix(&location.prefix).is_some_and(|n| !n.contains('/') && crate::backup::is_backup_name(cluster, n)))
            .collect();
        ours.sort_by_key(|k| crate::backup::age_order(cluster, &k[location.prefix.len()..]));
        let excess = ours.len().saturating_sub(keep);
        for k in ours.into_iter().take(excess) {
            store.delete(&k)?;
            deleted.push(location.url(&k));
        }
    }
    Ok(Shipped { url: location.url(&key), bytes, sha256, deleted })
}

/// `restore s3://...`: the object fetched into a private file (0600) in `dir`, removed when the
/// returned handle is dropped.
pub fn fetch(url: &str, settings: &Settings, dir: &Path, progress: &crate::progress::Progress) -> Result<tempfile::NamedTempFile> {
    crate::spec::rules::trusted_dir("restore (the folder the snapshot is fetched into, the spec's)", dir, pki::safe_fs::Writes::CreateExclusive)?;
    let (location, name) = parse_object(url).map_err(|reason| BootError::Offsite { url: url.to_string(), reason })?;
    let store = Store::new(&location, settings)?;
    let suffix = if name.ends_with(".age") { ".db.age" } else { ".db" };
    let mut tmp = tempfile::Builder::new().prefix(".restore-").suffix(suffix).tempfile_in(dir).map_err(crate::error::io("create a file in", dir))?;
    let t = std::time::Instant::now();
    let (bytes, _) = store.download(&location.key(&name), tmp.as_file_mut())?;
    progress.step("snapshot", &format!("{url}: {bytes} bytes fetched"), Some(t.elapsed()));
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn no_location_or_aws_file_makes_the_parsers_panic(text in "\\PC{0,80}", ini in "(\\PC{0,30}\n){0,8}") {
            let _ = Location::parse(&text);
            let _ = Location::parse(&format!("s3://{text}"));
            let _ = parse_object(&format!("s3://{text}"));
            let _ = ini_value(&ini, "default", "region", true);
            let _ = ini_value(&ini, "ops", "aws_access_key_id", false);
        }
    }

    #[test]
    fn subresources_go_without_a_value_and_failures_name_the_servers_code_and_message() {
        let signed = "https://s3.example/b/k.db?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host&uploads=&X-Amz-Signature=ab12";
        assert_eq!(
            valueless(signed, "uploads"),
            "https://s3.example/b/k.db?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host&uploads&X-Amz-Signature=ab12"
        );
        assert_eq!(valueless("https://s3.example/b/k.db?uploads=", "uploads"), "https://s3.example/b/k.db?uploads");
        let body = "<?xml version=\"1.0\"?><Error><Code>InvalidRequest</Code><Message>unknown action uploads=1</Message></Error>";
        assert_eq!(server_words(body), " InvalidRequest: unknown action uploads=1");
        assert_eq!(server_words("<Error><Code>NoSuchBucket</Code></Error>"), " NoSuchBucket");
        assert_eq!(server_words("Internal Server Error"), "");
    }

    #[test]
    fn locations_are_parsed_once_and_strictly() {
        assert_eq!(Location::parse("s3://backups/etcd/prod").unwrap(), Location { bucket: "backups".into(), prefix: "etcd/prod/".into() });
        assert_eq!(Location::parse("s3://backups").unwrap().prefix, "");
        for bad in ["https://x/y", "s3://UPPER/x", "s3://ab/x", "s3://b-ok/../x", "s3://b-ok//x", "s3://b-ok/x\ny"] {
            assert!(Location::parse(bad).is_err(), "{bad:?}");
        }
        let (loc, name) = parse_object("s3://backups/etcd/prod-20261125T000000Z-r1.db").unwrap();
        assert_eq!((loc.bucket.as_str(), loc.prefix.as_str(), name.as_str()), ("backups", "etcd/", "prod-20261125T000000Z-r1.db"));
        assert!(parse_object("s3://backups/").is_err());
    }

    #[test]
    fn settings_come_from_the_environment_then_the_aws_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n[ops]\naws_access_key_id=OPS\naws_secret_access_key=OPSK\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".aws/config"),
            "[default]\nregion = eu-west-1\n[profile ops]\nregion = us-west-2\nendpoint_url = http://127.0.0.1:9000\n",
        )
        .unwrap();
        let home = dir.path().display().to_string();
        let env = |vars: &'static [(&'static str, &'static str)]| {
            let home = home.clone();
            move |k: &str| if k == "HOME" { Some(home.clone()) } else { vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()) }
        };
        let d = Settings::from_env(env(&[])).unwrap();
        assert_eq!((d.key.as_str(), d.region.as_str(), d.endpoint.as_deref()), ("AK", "eu-west-1", None));
        let ops = Settings::from_env(env(&[("AWS_PROFILE", "ops")])).unwrap();
        assert_eq!((ops.key.as_str(), ops.region.as_str(), ops.endpoint.as_deref()), ("OPS", "us-west-2", Some("http://127.0.0.1:9000")));
        let e = Settings::from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "EK"),
            ("AWS_SECRET_ACCESS_KEY", "ES"),
            ("AWS_REGION", "ap-south-1"),
            ("AWS_ENDPOINT_URL", "http://s3.local:1"),
        ]))
        .unwrap();
        assert_eq!((e.key.as_str(), e.region.as_str(), e.endpoint.as_deref()), ("EK", "ap-south-1", Some("http://s3.local:1")));
        let none = Settings::from_env(|k: &str| if k == "HOME" { Some("/nonexistent".into()) } else { None }).unwrap_err();
        assert!(none.contains("AWS_ACCESS_KEY_ID"), "{none}");
    }
}
