//! Who may call: users with roles, virtual keys (`llk-…`), their scopes,
//! limits and budgets, as the request path sees them. The store fills an
//! [`Identities`] from its rows; it is part of the runtime snapshot, so a
//! lookup never waits on the database.
//!
//! High-entropy tokens (virtual keys, the admin token) are stored and looked
//! up as a keyed hash ([`token_hash`], HMAC-SHA256 under a random per-install
//! key that is kept encrypted in the database); argon2 is for passwords.
//! Sessions are HS256 JWTs ([`jwt`]) naming a session row that logout revokes.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;

/// The budget calendar's time zone.
pub use jiff::tz::TimeZone;

/// The prefix of every virtual key.
pub const KEY_PREFIX: &str = "llk-";

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Member,
    Viewer,
}

/// What a role may do (seed 003's list, plus users and keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    ViewProviders,
    EditProviders,
    ViewMetrics,
    SystemConfig,
    ManageUsers,
    /// Manage virtual keys: a member its own, an admin everyone's.
    ManageKeys,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Admin => &[
                ViewProviders,
                EditProviders,
                ViewMetrics,
                SystemConfig,
                ManageUsers,
                ManageKeys,
            ],
            Role::Member => &[ViewProviders, ViewMetrics, ManageKeys],
            Role::Viewer => &[ViewProviders, ViewMetrics],
        }
    }

    pub fn can(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ViewProviders => "ViewProviders",
            Permission::EditProviders => "EditProviders",
            Permission::ViewMetrics => "ViewMetrics",
            Permission::SystemConfig => "SystemConfig",
            Permission::ManageUsers => "ManageUsers",
            Permission::ManageKeys => "ManageKeys",
        }
    }
}

/// A budget's period; `Total` never resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    Total,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "daily" => Some(Period::Daily),
            "weekly" => Some(Period::Weekly),
            "monthly" => Some(Period::Monthly),
            "total" => Some(Period::Total),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Total => "total",
        }
    }

    /// The period holding `now_ms`, as `[start, end)` in Unix ms, on the
    /// calendar of `tz` (days start at local midnight, weeks on Monday,
    /// months on the 1st). `Total` is `[0, i64::MAX)`.
    pub fn bounds(self, now_ms: i64, tz: &jiff::tz::TimeZone) -> (i64, i64) {
        use jiff::{Timestamp, ToSpan};
        if self == Period::Total {
            return (0, i64::MAX);
        }
        let Ok(ts) = Timestamp::from_millisecond(now_ms) else {
            return (0, i64::MAX);
        };
        let local = ts.to_zoned(tz.clone());
        let day = local.date();
        let (start, next) = match self {
            Period::Daily => (day, day.checked_add(1.day())),
            Period::Weekly => {
                let back = i64::from(day.weekday().to_monday_zero_offset());
                let start = day.checked_sub(back.days()).unwrap_or(day);
                (start, start.checked_add(7.days()))
            }
            Period::Monthly => {
                let start = day.first_of_month();
                (start, start.checked_add(1.month()))
            }
            Period::Total => return (0, i64::MAX),
        };
        let ms = |d: jiff::civil::Date| -> Option<i64> {
            d.to_zoned(tz.clone())
                .ok()
                .map(|z| z.timestamp().as_millisecond())
        };
        let s = ms(start).unwrap_or(0);
        let e = next.ok().and_then(ms).unwrap_or(i64::MAX);
        (s, e)
    }
}

/// Money as integer micro-units of the catalog's currency (exact sums).
pub type Micros = i64;

/// Dollars (or the catalog's unit) to [`Micros`], rounding up so a
/// reservation never undercounts.
pub fn to_micros(amount: f64) -> Micros {
    if !amount.is_finite() || amount <= 0.0 {
        return 0;
    }
    let m = (amount * 1e6).ceil();
    if m >= i64::MAX as f64 {
        i64::MAX
    } else {
        m as i64
    }
}

pub fn from_micros(m: Micros) -> f64 {
    m as f64 / 1e6
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub amount: Micros,
    pub period: Period,
}

/// Limits a key or a user carries (each `None`: no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub max_concurrency: Option<u32>,
    pub budget: Option<Budget>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.max_concurrency.is_none()
            && self.budget.is_none()
    }
}

/// A user as the request path sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEntry {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub limits: Limits,
}

/// A virtual key as the request path sees it (never the key itself).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub id: i64,
    pub name: String,
    pub user_id: Option<i64>,
    /// The models it may call; `None`: any.
    pub models: Option<Vec<String>>,
    /// Unix ms after which it is refused.
    pub expires_at: Option<i64>,
    pub revoked: bool,
    pub limits: Limits,
}

impl KeyEntry {
    /// Whether `model` is in the key's scope.
    pub fn allows(&self, model: &str) -> bool {
        match &self.models {
            None => true,
            Some(list) => list.iter().any(|m| m == model || m == "*"),
        }
    }
}

/// The keyed hash of a high-entropy token, as stored: hex HMAC-SHA256.
pub fn token_hash(key: &[u8; 32], token: &str) -> String {
    // HMAC accepts any key length; 32 bytes cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The length of a key after `llk-`.
pub const KEY_CHARS: usize = 43;

/// A virtual key from `random` (the operating system's bytes; the store's
/// `crypto::random_bytes`): `llk-` and 43 alphanumerics with no characters
/// a shell or URL would mangle (about 250 bits).
pub fn generate_key(random: &[u8; KEY_CHARS]) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut s = String::with_capacity(KEY_PREFIX.len() + KEY_CHARS);
    s.push_str(KEY_PREFIX);
    for b in random {
        s.push(ALPHABET[*b as usize % ALPHABET.len()] as char);
    }
    s
}

/// The masked form shown after creation: `llk-…` and the last 4 characters.
pub fn hint(token: &str) -> String {
    let tail: String = token
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{KEY_PREFIX}…{tail}")
}

/// Users and virtual keys, looked up on the request path.
#[derive(Debug, Default, Clone)]
pub struct Identities {
    /// The HMAC key for [`token_hash`] (zero without a database).
    pub token_key: [u8; 32],
    /// By keyed hash.
    pub keys: HashMap<String, Arc<KeyEntry>>,
    pub users: HashMap<i64, Arc<UserEntry>>,
}

impl Identities {
    /// Whether any user or key exists (then model endpoints need a credential).
    pub fn any(&self) -> bool {
        !self.keys.is_empty() || !self.users.is_empty()
    }

    /// The key for a presented `llk-…` token, if it is one we issued.
    pub fn key(&self, token: &str) -> Option<&Arc<KeyEntry>> {
        if self.keys.is_empty() {
            return None;
        }
        self.keys.get(&token_hash(&self.token_key, token))
    }

    pub fn user(&self, id: i64) -> Option<&Arc<UserEntry>> {
        self.users.get(&id)
    }
}

/// Session tokens: HS256 JWTs.
pub mod jwt {
    use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
    use serde::{Deserialize, Serialize};

    /// What a session token says.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Claims {
        /// The user id, as a string (RFC 7519 `sub`).
        pub sub: String,
        /// The session id (the row logout revokes).
        pub sid: String,
        pub role: String,
        pub iat: i64,
        /// Unix seconds.
        pub exp: i64,
        pub iss: String,
    }

    pub const ISSUER: &str = "llm-link";

    pub fn issue(secret: &[u8], claims: &Claims) -> Result<String, String> {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .map_err(|e| e.to_string())
    }

    /// Checks signature, algorithm, issuer and expiry.
    pub fn verify(secret: &[u8], token: &str) -> Result<Claims, String> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub", "iss"]);
        decode::<Claims>(token, &DecodingKey::from_secret(secret), &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }

    /// Looks like a JWT (three base64url parts), not an API key.
    pub fn looks_like(token: &str) -> bool {
        token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn roles_and_permissions() {
        assert!(Role::Admin.can(Permission::ManageUsers));
        assert!(Role::Member.can(Permission::ManageKeys));
        assert!(!Role::Member.can(Permission::EditProviders));
        assert!(!Role::Viewer.can(Permission::ManageKeys));
        assert!(Role::Viewer.can(Permission::ViewMetrics));
        assert_eq!(Role::parse("member"), Some(Role::Member));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn keys_hash_and_look_up() {
        let k = generate_key(&[7u8; KEY_CHARS]);
        assert!(k.starts_with("llk-") && k.len() == 47, "{k}");
        assert_ne!(k, generate_key(&[8u8; KEY_CHARS]));
        let tk = [7u8; 32];
        let mut ids = Identities {
            token_key: tk,
            ..Default::default()
        };
        let entry = Arc::new(KeyEntry {
            id: 1,
            name: "ci".into(),
            user_id: None,
            models: Some(vec!["gpt-4o".into()]),
            expires_at: None,
            revoked: false,
            limits: Limits::default(),
        });
        ids.keys.insert(token_hash(&tk, &k), entry);
        assert_eq!(ids.key(&k).unwrap().id, 1);
        assert!(ids.key("llk-wrong").is_none());
        // Another install's hash key gives another hash.
        assert_ne!(token_hash(&tk, &k), token_hash(&[8u8; 32], &k));
        assert!(ids.key(&k).unwrap().allows("gpt-4o"));
        assert!(!ids.key(&k).unwrap().allows("gpt-4o-mini"));
        assert!(hint(&k).starts_with("llk-…") && hint(&k).ends_with(&k[k.len() - 4..]));
    }

    #[test]
    fn calendar_periods_follow_the_time_zone() {
        let utc = jiff::tz::TimeZone::UTC;
        // 2026-12-06T03:00:00Z is a Sunday.
        let now = 1_796_526_000_000;
        let (s, e) = Period::Daily.bounds(now, &utc);
        assert_eq!((s, e), (1_796_515_200_000, 1_796_601_600_000));
        let (s, e) = Period::Weekly.bounds(now, &utc);
        assert_eq!(e - s, 7 * 86_400_000);
        assert_eq!(s, 1_796_515_200_000 - 6 * 86_400_000);
        let (s, e) = Period::Monthly.bounds(now, &utc);
        assert_eq!(s, 1_796_515_200_000 - 5 * 86_400_000);
        assert_eq!(e, s + 31 * 86_400_000);
        // In Shanghai (UTC+8) it is already 11:00 on the 6th: same day.
        let sh = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        let (s, _) = Period::Daily.bounds(now, &sh);
        assert_eq!(s, 1_796_515_200_000 - 8 * 3_600_000);
        assert_eq!(Period::Total.bounds(now, &utc), (0, i64::MAX));
    }

    #[test]
    fn micros_round_up() {
        assert_eq!(to_micros(0.0000001), 1);
        assert_eq!(to_micros(1.5), 1_500_000);
        assert_eq!(to_micros(-1.0), 0);
        assert_eq!(to_micros(f64::NAN), 0);
    }

    #[test]
    fn jwt_round_trip_and_tampering() {
        let secret = [3u8; 32];
        let now = crate::util::now_secs() as i64;
        let c = jwt::Claims {
            sub: "7".into(),
            sid: "s1".into(),
            role: "member".into(),
            iat: now,
            exp: now + 60,
            iss: jwt::ISSUER.into(),
        };
        let t = jwt::issue(&secret, &c).unwrap();
        assert!(jwt::looks_like(&t));
        assert_eq!(jwt::verify(&secret, &t).unwrap(), c);
        assert!(jwt::verify(&[4u8; 32], &t).is_err());
        let expired = jwt::Claims {
            exp: now - 10,
            ..c.clone()
        };
        let t = jwt::issue(&secret, &expired).unwrap();
        assert!(jwt::verify(&secret, &t).is_err());
        assert!(!jwt::looks_like("llk-abc"));
    }
}
