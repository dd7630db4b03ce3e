//! `remit token`: look inside a token (`inspect`, verifying it when given a configuration),
//! exchange a human's token for an agent's at a running remit (`exchange`), and sign a
//! demo human's token with the quickstart's published demo-only issuer key (`demo-login`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use std::io::Read as _;

use base64::Engine as _;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a token's header and claims; with `--config`, also verify it.
    Inspect {
        /// The token (`-` for standard input).
        token: String,
        /// Verify against this configuration's issuers (and remit's keys in `--data-dir`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where remit's signing keys live; default `data/` beside the configuration.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// RFC 8693 token exchange at a running remit: a human's token and an agent's API key
    /// in, a token acting for the human out.
    Exchange {
        /// remit's proxy listener, e.g. `http://127.0.0.1:8440`.
        #[arg(long)]
        url: String,
        /// The human's token (`subject_token`).
        #[arg(long)]
        subject_token: String,
        /// The agent's API key (`actor_token`).
        #[arg(long)]
        actor_key: String,
        /// The scope asked for (actions, space-separated).
        #[arg(long)]
        scope: Option<String>,
        /// The purpose the token is for.
        #[arg(long)]
        purpose: Option<String>,
    },
    /// DEMO ONLY: sign a five-minute token for a demo human with the quickstart's published
    /// demo issuer key (`demo-issuer/` beside the configuration).
    DemoLogin {
        /// The human, e.g. `alice`.
        human: String,
        /// Their groups.
        #[arg(long, default_value = "support")]
        groups: Vec<String>,
        /// The quickstart configuration.
        #[arg(long)]
        config: PathBuf,
    },
}

pub(crate) fn read_token(t: &str) -> Result<String> {
    let t = if t == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().take(16 * 1024), &mut s)?;
        s
    } else {
        t.to_owned()
    };
    Ok(t.trim().to_owned())
}

fn segment(s: &str) -> Result<serde_json::Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .context("a segment is not base64url")?;
    serde_json::from_slice(&bytes).context("a segment is not JSON")
}

pub(crate) fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn run(cmd: TokenCommand) -> Result<std::process::ExitCode> {
    match cmd {
        TokenCommand::Inspect {
            token,
            config,
            data_dir,
        } => {
            let token = read_token(&token)?;
            let parts: Vec<&str> = token.split('.').collect();
            if parts.len() != 3 {
                bail!("a JWT has three segments; this has {}", parts.len());
            }
            let out =
                serde_json::json!({"header": segment(parts[0])?, "claims": segment(parts[1])?});
            println!("{}", serde_json::to_string_pretty(&out)?);
            let Some(config) = config else {
                println!("not verified (give --config to verify)");
                return Ok(std::process::ExitCode::SUCCESS);
            };
            let engine = std::sync::Arc::new(remit_engine::load::load_engine(&config)?);
            let dir = data_dir.unwrap_or_else(|| crate::default_data_dir(&config));
            // remit's own keys, when this data directory has them (never made here).
            let _svc = if engine.config().tokens.issuer.is_some() && dir.join("token-keys").is_dir()
            {
                Some(remit_gateway::token::TokenService::open(
                    engine.clone(),
                    &dir,
                )?)
            } else {
                None
            };
            verdict(&engine, &token)
        }
        TokenCommand::Exchange {
            url,
            subject_token,
            actor_key,
            scope,
            purpose,
        } => {
            let mut body = format!(
                "grant_type={}&subject_token={}&subject_token_type={}&actor_token={}&actor_token_type={}",
                form_escape(remit_gateway::token::TOKEN_EXCHANGE),
                form_escape(&read_token(&subject_token)?),
                form_escape(remit_gateway::token::JWT_TYPE),
                form_escape(&actor_key),
                form_escape(remit_gateway::token::API_KEY_TYPE),
            );
            for (k, v) in [("scope", scope), ("purpose", purpose)] {
                if let Some(v) = v {
                    body.push_str(&format!("&{k}={}", form_escape(&v)));
                }
            }
            let rt = crate::runtime()?;
            let (status, text) = rt.block_on(async {
                let r = reqwest::Client::new()
                    .post(format!("{}/oauth2/token", url.trim_end_matches('/')))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .with_context(|| format!("reaching {url}"))?;
                let status = r.status();
                anyhow::Ok((status, r.text().await?))
            })?;
            println!("{text}");
            Ok(if status.is_success() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            })
        }
        TokenCommand::DemoLogin {
            human,
            groups,
            config,
        } => {
            let cfg = remit_engine::load::read_config(&config)?;
            let issuer = cfg
                .tokens
                .issuers
                .iter()
                .find(|i| i.id == "demo-humans")
                .context("the configuration has no `demo-humans` issuer (the quickstart's)")?;
            let dir = config
                .parent()
                .unwrap_or(Path::new("."))
                .join("demo-issuer");
            let pem = std::fs::read_to_string(dir.join("DEMO-ONLY-private-key.pem"))
                .with_context(|| format!("reading the demo issuer key in {}", dir.display()))?;
            let jwks: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("jwks.json"))?)?;
            let kid = jwks["keys"][0]["kid"]
                .as_str()
                .context("the demo JWKS has no kid")?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let claims = serde_json::json!({
                "iss": issuer.issuer, "aud": issuer.audience, "sub": human, "groups": groups,
                "iat": now, "nbf": now, "exp": now + 300,
                "jti": uuid::Uuid::now_v7().to_string(),
            });
            println!("{}", remit_token::mint::sign_with_pem(&pem, kid, &claims)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn verdict(engine: &remit_engine::Engine, token: &str) -> Result<std::process::ExitCode> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match engine.tokens().verify(token, now) {
        Ok(v) => {
            println!(
                "verified: issuer `{}`, subject `{}`, actors {:?}, expires in {} s",
                v.issuer_id,
                v.subject,
                v.actors,
                v.exp - now
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("refused: {e}");
            Ok(std::process::ExitCode::from(1))
        }
    }
}
