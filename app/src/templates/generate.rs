//! Generated inputs: made once when a template is deployed, then stored as (secret) shared
//! variables of the environment like any other.

use super::{Generate, Input};
use base64::Engine;
use rand::{distributions::Alphanumeric, Rng};
use sha2::Sha256;
use std::collections::BTreeMap;

fn alnum(rng: &mut impl Rng, length: u32) -> String {
    rng.sample_iter(&Alphanumeric).take(length as usize).map(char::from).collect()
}

/// The value of one generator. `values` holds the inputs made so far (a token's secret).
pub fn generate(g: &Generate, values: &BTreeMap<String, String>, rng: &mut impl Rng, now: i64) -> Result<String, String> {
    Ok(match g {
        Generate::Password { length } | Generate::Alnum { length } => alnum(rng, *length),
        Generate::Hex { length } => (0..*length).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect(),
        Generate::Base64 { length } => {
            let bytes: Vec<u8> = (0..*length).map(|_| rng.gen()).collect();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }
        Generate::Uuid => uuid::Uuid::from_bytes(rng.gen()).to_string(),
        Generate::Int { min, max } => rng.gen_range(*min..=*max).to_string(),
        Generate::Username { length } => {
            let first = char::from(b'a' + rng.gen_range(0..26u8));
            let rest: String = (1..*length)
                .map(|_| {
                    let i = rng.gen_range(0..36u8);
                    char::from(if i < 26 { b'a' + i } else { b'0' + i - 26 })
                })
                .collect();
            format!("{first}{rest}")
        }
        Generate::Port => rng.gen_range(10000..=60999).to_string(),
        Generate::Jwt { secret, claims, valid_days } => {
            let key = values.get(secret).ok_or_else(|| format!("the token's secret {secret} is not generated before it"))?;
            jwt_hs256(key.as_bytes(), claims, now, *valid_days)
        }
    })
}

/// An HS256 JSON Web Token: `claims` plus `iat` and `exp`.
pub fn jwt_hs256(key: &[u8], claims: &BTreeMap<String, serde_json::Value>, now: i64, valid_days: u32) -> String {
    use hmac::{Mac, SimpleHmac};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload = claims.clone();
    payload.insert("iat".into(), now.into());
    payload.insert("exp".into(), (now + i64::from(valid_days) * 86_400).into());
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(serde_json::to_vec(&payload).unwrap_or_default());
    let signing_input = format!("{header}.{body}");
    let mut mac = <SimpleHmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(signing_input.as_bytes());
    let signature = b64.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Values for every generated input, in an order where a token's secret comes first.
pub fn generate_all(inputs: &[Input], rng: &mut impl Rng, now: i64) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    let (tokens, plain): (Vec<&Input>, Vec<&Input>) =
        inputs.iter().filter(|i| i.generate.is_some()).partition(|i| matches!(i.generate, Some(Generate::Jwt { .. })));
    for input in plain.into_iter().chain(tokens) {
        if let Some(g) = &input.generate {
            let v = generate(g, &values, rng, now)?;
            values.insert(input.name.clone(), v);
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn every_generator_makes_what_it_says() {
        let mut rng = StdRng::seed_from_u64(7);
        let v = BTreeMap::new();
        let pw = generate(&Generate::Password { length: 40 }, &v, &mut rng, 0).unwrap();
        assert_eq!(pw.len(), 40);
        assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));
        let hex = generate(&Generate::Hex { length: 64 }, &v, &mut rng, 0).unwrap();
        assert!(hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()));
        let b = generate(&Generate::Base64 { length: 32 }, &v, &mut rng, 0).unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&b).unwrap().len(), 32);
        let id = generate(&Generate::Uuid, &v, &mut rng, 0).unwrap();
        assert!(uuid::Uuid::parse_str(&id).is_ok());
        for _ in 0..200 {
            let n: i64 = generate(&Generate::Int { min: -3, max: 3 }, &v, &mut rng, 0).unwrap().parse().unwrap();
            assert!((-3..=3).contains(&n));
            let p: u16 = generate(&Generate::Port, &v, &mut rng, 0).unwrap().parse().unwrap();
            assert!((10000..=60999).contains(&p));
        }
        let user = generate(&Generate::Username { length: 10 }, &v, &mut rng, 0).unwrap();
        assert!(user.len() == 10 && user.starts_with(|c: char| c.is_ascii_lowercase()));
        assert!(user.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }

    #[test]
    fn a_token_is_signed_with_its_secret_and_verifies() {
        use hmac::{Mac, SimpleHmac};
        let inputs: Vec<Input> = toml::from_str::<super::super::Spec>(
            r#"version = 1
            services = []
            [template]
            slug = "t"
            name = "T"
            summary = "s"
            category = "c"
            [[inputs]]
            name = "ANON_KEY"
            generate = { kind = "jwt", secret = "JWT_SECRET", claims = { role = "anon" } }
            [[inputs]]
            name = "JWT_SECRET"
            generate = { kind = "hex", length = 64 }"#,
        )
        .unwrap()
        .inputs;
        let values = generate_all(&inputs, &mut rand::thread_rng(), 1_700_000_000).unwrap();
        let token = &values["ANON_KEY"];
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut mac = <SimpleHmac<Sha256> as Mac>::new_from_slice(values["JWT_SECRET"].as_bytes()).unwrap();
        mac.update(signed.as_bytes());
        mac.verify_slice(&b64.decode(sig).unwrap()).expect("the signature verifies with the secret");
        let claims: serde_json::Value = serde_json::from_slice(&b64.decode(signed.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["role"], "anon");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_000_000 + 3650 * 86_400);
    }
}
