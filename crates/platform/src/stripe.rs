//! Stripe's API as kassa uses it: form-encoded requests with the secret key, an
//! `Idempotency-Key` where a request must not take effect twice, and Stripe's errors read into
//! what they mean for the caller (the card refused, or Stripe unavailable). The users service
//! saves cards through it (Customers and PaymentMethods) and the payments service charges and
//! refunds them (PaymentIntents and Refunds); the webhook's signature is checked here too.

use std::time::Duration;

use serde_json::Value;

use crate::service::{BuildError, Options, Setting};

/// Which provider charges cards: `simulated` (kassa's own, the default) or `stripe`.
pub const PROVIDER: Setting = Setting {
    name: "provider",
    default: "simulated",
    help: "Payment provider: simulated or stripe",
    secret: false,
};

pub const SECRET_KEY: Setting = Setting {
    name: "stripe-secret-key",
    default: "",
    help: "Stripe's secret key (sk_…), with --provider stripe",
    secret: true,
};

pub const API_BASE: Setting = Setting {
    name: "stripe-api-base",
    default: "https://api.stripe.com",
    help: "Stripe's API address (a test server such as localstripe, in tests)",
    secret: false,
};

pub const WEBHOOK_SECRET: Setting = Setting {
    name: "stripe-webhook-secret",
    default: "",
    help: "The signing secret (whsec_…) of Stripe's webhook to /api/payments/webhooks/stripe",
    secret: true,
};

/// How the installation reaches Stripe, when it charges through it.
#[derive(Clone)]
pub struct Stripe {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe").field("base", &self.base).finish()
    }
}

/// What became of a request to Stripe.
#[derive(Debug, Clone, PartialEq)]
pub enum StripeError {
    /// Stripe refused it for the card's sake (HTTP 402, a `card_error`): its message.
    Card { code: String, message: String },
    /// Stripe refused it as a request (a 4xx): kassa asked for something it should not have.
    Request { status: u16, message: String },
    /// No answer, or Stripe failed (5xx, 429): try again later.
    Unavailable(String),
}

impl std::fmt::Display for StripeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StripeError::Card { message, .. } => write!(f, "{message}"),
            StripeError::Request { status, message } => {
                write!(f, "Stripe answered {status}: {message}")
            }
            StripeError::Unavailable(why) => write!(f, "Stripe is unavailable: {why}"),
        }
    }
}

impl Stripe {
    /// The Stripe configured in `options`, or `None` when the provider is the simulated one.
    pub fn from_options(options: &Options) -> Result<Option<Stripe>, BuildError> {
        let provider: String = options.get(&PROVIDER)?;
        match provider.as_str() {
            "simulated" => Ok(None),
            "stripe" => {
                let key: String = options.get(&SECRET_KEY)?;
                if !key.starts_with("sk_") {
                    return Err(BuildError::setting(
                        &SECRET_KEY,
                        "give Stripe's secret key (sk_live_… or sk_test_…) to charge through Stripe",
                    ));
                }
                let base: String = options.get(&API_BASE)?;
                Stripe::new(&base, &key)
                    .map(Some)
                    .map_err(|e| BuildError::setting(&API_BASE, e))
            }
            other => Err(BuildError::setting(
                &PROVIDER,
                format!("`{other}`: simulated or stripe"),
            )),
        }
    }

    pub fn new(base: &str, key: &str) -> Result<Self, String> {
        crate::http::https_ready();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Stripe {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http,
        })
    }

    /// `POST /v1/<path>` with `form`; with `idempotency_key`, a repeat takes effect once.
    pub async fn post(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeError> {
        let body = serde_urlencoded::to_string(form).map_err(|e| StripeError::Request {
            status: 0,
            message: e.to_string(),
        })?;
        let mut req = self
            .http
            .post(format!("{}/v1/{path}", self.base))
            .bearer_auth(&self.key)
            .header("Stripe-Version", "2024-12-18.acacia")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        let response = req
            .send()
            .await
            .map_err(|e| StripeError::Unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .map_err(|e| StripeError::Unavailable(format!("an answer that is not JSON: {e}")))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let error = &body["error"];
        let message = error["message"].as_str().unwrap_or("no message").to_owned();
        Err(match status {
            402 => StripeError::Card {
                code: error["code"].as_str().unwrap_or("card_declined").to_owned(),
                message,
            },
            429 | 500..=599 => StripeError::Unavailable(format!("{status}: {message}")),
            _ if error["type"] == "card_error" => StripeError::Card {
                code: error["code"].as_str().unwrap_or("card_declined").to_owned(),
                message,
            },
            _ => StripeError::Request { status, message },
        })
    }
}

/// How far a webhook's timestamp may be from now (Stripe's libraries default to 5 minutes).
pub const SIGNATURE_TOLERANCE: Duration = Duration::from_secs(300);

/// Whether `header` (`Stripe-Signature: t=…,v1=…[,v1=…]`) signs `payload` with `secret`
/// (HMAC-SHA256 of `t.payload`, compared in constant time) at a time within `tolerance` of
/// `now` (seconds since 1970).
pub fn signature_holds(
    header: &str,
    payload: &[u8],
    secret: &str,
    now: i64,
    tolerance: Duration,
) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", hex)) => signatures.push(hex.to_owned()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return false;
    }
    let signed_at = timestamp.to_string();
    signatures.iter().any(|hex| {
        crate::signing::verify_hex(
            secret.as_bytes(),
            &[signed_at.as_bytes(), b".", payload],
            hex,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stripe_is_reached_over_https() {
        // A TLS handshake with a server that speaks none fails as TLS, not as an unsupported
        // scheme: the client speaks HTTPS.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            }
        });
        let stripe = Stripe::new(&format!("https://{addr}"), "sk_test_x").unwrap();
        let e = stripe.post("customers", &[], None).await.unwrap_err();
        let StripeError::Unavailable(why) = e else {
            panic!("{e:?}")
        };
        assert!(!why.contains("scheme"), "{why}");
    }

    fn sign(secret: &str, t: i64, payload: &[u8]) -> String {
        let hex =
            crate::signing::sign_hex(secret.as_bytes(), &[format!("{t}.").as_bytes(), payload]);
        format!("t={t},v1={hex}")
    }

    #[test]
    fn a_signature_holds_for_its_payload_secret_and_time_only() {
        let payload = br#"{"type":"payment_intent.succeeded"}"#;
        let now = 1_800_000_000;
        let header = sign("whsec_test", now, payload);
        let tolerance = SIGNATURE_TOLERANCE;
        assert!(signature_holds(
            &header,
            payload,
            "whsec_test",
            now,
            tolerance
        ));
        assert!(signature_holds(
            &header,
            payload,
            "whsec_test",
            now + 299,
            tolerance
        ));
        // Another payload, another secret, too old, or no signature at all.
        assert!(!signature_holds(
            &header,
            b"{}",
            "whsec_test",
            now,
            tolerance
        ));
        assert!(!signature_holds(
            &header,
            payload,
            "whsec_other",
            now,
            tolerance
        ));
        assert!(!signature_holds(
            &header,
            payload,
            "whsec_test",
            now + 301,
            tolerance
        ));
        assert!(!signature_holds(
            &format!("t={now}"),
            payload,
            "whsec_test",
            now,
            tolerance
        ));
        assert!(!signature_holds(
            "garbage",
            payload,
            "whsec_test",
            now,
            tolerance
        ));
        // One of several signatures (a secret being rolled) is enough.
        let rolled = format!("{},v1=00ff", header);
        assert!(signature_holds(
            &rolled,
            payload,
            "whsec_test",
            now,
            tolerance
        ));
    }
}
