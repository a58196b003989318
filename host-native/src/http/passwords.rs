//! Password hashes: Argon2id in PHC string form (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), as
//! the config file's `users` hold them and `synap-server hash-password` prints them.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Whether `phc` parses as a password hash this server can verify.
pub(crate) fn validate(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC password hash: {e}"))?;
    if !hash.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "unsupported password hash algorithm {} (use argon2id)",
            hash.algorithm
        ));
    }
    Ok(())
}

/// Whether `password` matches `phc`; a malformed hash matches nothing.
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Hashes `password` with Argon2id's default parameters and a random 16-byte salt.
pub(crate) fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no OS randomness for the salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("s3cret").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        validate(&phc).unwrap();
        assert!(verify("s3cret", &phc));
        assert!(!verify("s3cret ", &phc));
        assert!(!verify("s3cret", "not a hash"));
        assert!(validate("$2b$12$abcdefghijklmnopqrstuv").is_err());
    }
}
