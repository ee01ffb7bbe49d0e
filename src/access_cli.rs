//! `kefu users` and `kefu tokens`: who may sign in, and the API tokens programs
//! use. The first admin is made here; after that admins can also use the HTTP API.
//! Every change is audited with the actor "cli:$USER".

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use kefu::auth::{Role, check_name, new_token, password};
use kefu::store::access::{Audit, UserChange};

use crate::store_cli::{StoreArgs, actor, finish, runtime};

#[derive(clap::Subcommand)]
pub enum UsersCommand {
    /// Add a user (a person who signs in to the web API). Without
    /// --password-stdin a password is generated and printed once.
    Add {
        name: String,
        /// admin, supervisor, agent, auditor or integrator.
        #[arg(long)]
        role: Role,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List users.
    List(StoreArgs),
    /// Change a user's role or password, or disable them (their sessions end).
    Set {
        name: String,
        #[arg(long)]
        role: Option<Role>,
        /// Read a new password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// Make an API token for a program; prints the token (shown only this once).
    Create {
        name: String,
        /// integrator (channels and knowledge base) or auditor (reports, audit log).
        #[arg(long, default_value = "integrator")]
        role: Role,
        /// How many days it works (1 to 366).
        #[arg(long, default_value_t = kefu::auth::TOKEN_DAYS)]
        days: u32,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tokens (never the tokens themselves: only their hashes are kept).
    List(StoreArgs),
    /// Revoke a token by its id.
    Revoke {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn read_password() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read the password from standard input")?;
    let p = s.lines().next().unwrap_or_default().to_string();
    password::check(&p).map_err(anyhow::Error::msg)?;
    Ok(p)
}

pub fn users(cmd: UsersCommand) -> ExitCode {
    finish(match cmd {
        UsersCommand::Add {
            name,
            role,
            password_stdin,
            store,
        } => store.load().and_then(|c| {
            check_name(&name).map_err(anyhow::Error::msg)?;
            let (pw, generated) = if password_stdin {
                (read_password()?, false)
            } else {
                (password::generate(), true)
            };
            let hash = password::hash(&pw)?;
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let audit = Audit {
                    actor: actor(),
                    action: "user.add",
                    target: name.clone(),
                    detail: format!("role {role}"),
                };
                let r = s.add_user(&name, role.as_str(), &hash, audit).await;
                s.close().await;
                if r?.is_none() {
                    bail!("a user named {name:?} already exists");
                }
                if generated {
                    println!("added {name} ({role}); password: {pw}");
                } else {
                    println!("added {name} ({role})");
                }
                Ok(())
            })
        }),
        UsersCommand::List(store) => store.load().and_then(|c| {
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let users = s.users().await;
                s.close().await;
                for u in users? {
                    println!(
                        "{}\t{}\t{}\t{}",
                        u.name,
                        u.role,
                        if u.disabled { "disabled" } else { "active" },
                        u.created.to_rfc3339()
                    );
                }
                Ok(())
            })
        }),
        UsersCommand::Set {
            name,
            role,
            password_stdin,
            disable,
            enable,
            store,
        } => store.load().and_then(|c| {
            let password_hash = if password_stdin {
                Some(password::hash(&read_password()?)?)
            } else {
                None
            };
            let disabled = match (disable, enable) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let mut detail = Vec::new();
            if let Some(r) = role {
                detail.push(format!("role {r}"));
            }
            if password_hash.is_some() {
                detail.push("password reset".into());
            }
            if let Some(d) = disabled {
                detail.push(if d { "disabled" } else { "enabled" }.into());
            }
            if detail.is_empty() {
                bail!("nothing to change: give --role, --password-stdin, --disable or --enable");
            }
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let change = UserChange {
                    role: role.map(|r| r.as_str().to_string()),
                    password_hash,
                    disabled,
                };
                let audit = Audit {
                    actor: actor(),
                    action: "user.change",
                    target: name.clone(),
                    detail: detail.join(", "),
                };
                let r = s.change_user(&name, &change, audit).await;
                s.close().await;
                match r? {
                    Some(u) => println!("{}: {}", u.name, detail.join(", ")),
                    None => bail!("no user {name:?}"),
                }
                Ok(())
            })
        }),
    })
}

pub fn tokens(cmd: TokensCommand) -> ExitCode {
    finish(match cmd {
        TokensCommand::Create {
            name,
            role,
            days,
            store,
        } => store.load().and_then(|c| {
            check_name(&name).map_err(anyhow::Error::msg)?;
            let expires = kefu::auth::token_expiry(Some(days)).map_err(anyhow::Error::msg)?;
            if !role.token_may_have() {
                bail!(
                    "an API token may be an integrator or an auditor, not {role}: people sign in"
                );
            }
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let token = new_token();
                let audit = Audit {
                    actor: actor(),
                    action: "token.add",
                    target: name.clone(),
                    detail: format!("role {role}, until {}", expires.to_rfc3339()),
                };
                let r = s
                    .add_token(&token, &name, role.as_str(), expires, audit)
                    .await;
                s.close().await;
                let info = r?;
                eprintln!(
                    "token {} ({}, {role}, until {}); it is shown only now:",
                    info.id,
                    info.name,
                    info.expires.format("%Y-%m-%d %H:%M UTC")
                );
                println!("{token}");
                Ok(())
            })
        }),
        TokensCommand::List(store) => store.load().and_then(|c| {
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let tokens = s.tokens().await;
                s.close().await;
                for t in tokens? {
                    let state = match t.revoked {
                        Some(r) => format!("revoked {}", r.to_rfc3339()),
                        None if t.expires <= chrono::Utc::now() => {
                            format!("expired {}", t.expires.to_rfc3339())
                        }
                        None => format!("live until {}", t.expires.to_rfc3339()),
                    };
                    println!("{}\t{}\t{}\t{state}", t.id, t.name, t.role);
                }
                Ok(())
            })
        }),
        TokensCommand::Revoke { id, store } => store.load().and_then(|c| {
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let audit = Audit {
                    actor: actor(),
                    action: "token.revoke",
                    target: id.clone(),
                    detail: String::new(),
                };
                let r = s.revoke_token(&id, audit).await;
                s.close().await;
                if !r? {
                    bail!("no live token {id:?}");
                }
                println!("revoked {id}");
                Ok(())
            })
        }),
    })
}

#[derive(clap::Subcommand)]
pub enum AgentsCommand {
    /// Add an agent whose phone registers as EXTENSION (digest authentication in
    /// the `sip_realm`). Without --password-stdin a SIP password is generated and
    /// printed once.
    Add {
        /// The name callers' summaries and the desk show.
        name: String,
        /// The SIP user name the agent's phone registers as (e.g. 1001).
        #[arg(long)]
        extension: String,
        /// Queues the agent serves, comma-separated.
        #[arg(long, default_value = "general")]
        queues: String,
        /// Skills for skills-based queues, comma-separated (e.g. "zh,en,billing").
        #[arg(long, default_value = "")]
        skills: String,
        /// The user (kefu users) who works the desk as this agent.
        #[arg(long)]
        user: Option<String>,
        /// Call the agent at this SIP URI when their phone has not registered (a
        /// desk phone on the PBX, reached through the trunk).
        #[arg(long)]
        uri: Option<String>,
        /// Read the SIP password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List agents.
    List(StoreArgs),
}

pub fn agents(cmd: AgentsCommand) -> ExitCode {
    use kefu::agents::digest::{Algorithm, ha1};
    use kefu::store::agents::{NewAgent, split_list};
    finish(match cmd {
        AgentsCommand::Add {
            name,
            extension,
            queues,
            skills,
            user,
            uri,
            password_stdin,
            store,
        } => store.load().and_then(|c| {
            if let Some(u) = &uri
                && let Err(e) = kefu::call::leg::check_uri(u)
            {
                bail!("--uri: {e}");
            }
            if extension.is_empty()
                || extension.len() > 32
                || !extension
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
            {
                bail!("--extension must be 1 to 32 letters, digits, '.', '_' or '-'");
            }
            if name.trim().is_empty() || name.len() > 64 {
                bail!("the agent's name must be 1 to 64 characters");
            }
            let queues = split_list(&queues);
            if queues.is_empty() {
                bail!("--queues must name at least one queue");
            }
            let (pw, generated) = if password_stdin {
                (read_password()?, false)
            } else {
                (password::generate(), true)
            };
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let user_id = match &user {
                    Some(u) => match s.user_with_hash(u).await? {
                        Some((found, _)) => Some(found.id),
                        None => bail!("no user {u:?} (add one with `kefu users add`)"),
                    },
                    None => None,
                };
                let new = NewAgent {
                    name: name.trim().to_string(),
                    extension: extension.clone(),
                    queues,
                    skills: split_list(&skills),
                    user_id,
                    contact_uri: uri.clone(),
                    ha1_sha256: ha1(Algorithm::Sha256, &extension, &c.sip_realm, &pw),
                    ha1_md5: ha1(Algorithm::Md5, &extension, &c.sip_realm, &pw),
                };
                let audit = Audit {
                    actor: actor(),
                    action: "agent.add",
                    target: extension.clone(),
                    detail: format!("{} ({})", new.name, new.queues.join(",")),
                };
                let r = s.add_agent(&new, audit).await;
                s.close().await;
                r?;
                if generated {
                    println!("added agent {name} at extension {extension}; SIP password: {pw}");
                } else {
                    println!("added agent {name} at extension {extension}");
                }
                Ok(())
            })
        }),
        AgentsCommand::List(store) => store.load().and_then(|c| {
            runtime()?.block_on(async {
                let s = c.open_store().await?;
                let agents = s.agents().await;
                s.close().await;
                for a in agents? {
                    println!(
                        "{}\t{}\tqueues={}\tskills={}{}",
                        a.extension,
                        a.name,
                        a.queues.join(","),
                        a.skills.join(","),
                        a.contact_uri
                            .map(|u| format!("\turi={u}"))
                            .unwrap_or_default()
                    );
                }
                Ok(())
            })
        }),
    })
}
