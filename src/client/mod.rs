//! The admin client: `highlander status | groups | queue | endpoints | records | quarantine
//! | pin | unpin | failover | pause | resume | skip | replay`. Each command is one call to
//! the admin API of a running node.
//!
//! - Where: `--admin URL` (`HIGHLANDER_ADMIN`). The default is `http://127.0.0.1:9092`,
//!   the node's default admin listener.
//! - Token: `--token`, `--token-file` or `HIGHLANDER_ADMIN_TOKEN`, sent as
//!   `Authorization: Bearer`.
//! - Output: a human table on stdout ([`render`], built on [`table`]). The client reads
//!   the answer as its [`crate::api`] type first. With `--json`, it prints the server's
//!   JSON as is (pretty), for scripts, even when this client cannot read it.
//! - The client reads and writes the same API that the web page uses, so the three views
//!   never disagree.
//! - Failure: exit code 1, with the server's `{error, detail}` on stderr
//!   (`highlander: 404 unknown_group: …`), or with what went wrong on the way to the
//!   listener. Exit code 2 for a usage problem found before anything was sent (bad URL,
//!   unreadable token file).
//!
//! The client holds no state and never retries. An operator action runs once or fails
//! loudly.

pub mod api;
pub mod render;
pub mod table;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use crate::api::{GroupView, Records, Unpinned};
use crate::config::cli::{
    AdminArgs, AdminCommand, ClusterAction, ClusterArgs, HoldArgs, QuarantineAction,
    QuarantineArgs, RecordsArgs,
};
use api::{Api, ClientError};

/// Runs one client command and returns the process exit code. Prints the result on
/// stdout and any error on stderr.
pub fn run(command: AdminCommand) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Usage(format!("cannot start the runtime: {e}")))
        .and_then(|rt| rt.block_on(execute(&command)));
    match result {
        Ok(out) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("highlander: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The token from `--token` / `HIGHLANDER_ADMIN_TOKEN`, else from `--token-file`.
fn token(args: &AdminArgs) -> Result<Option<String>, ClientError> {
    if let Some(t) = &args.token {
        return Ok(Some(t.trim().to_owned()).filter(|t| !t.is_empty()));
    }
    let Some(path) = &args.token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ClientError::Usage(format!("cannot read --token-file {}: {e}", path.display()))
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(ClientError::Usage(format!(
            "--token-file {} is empty",
            path.display()
        )));
    }
    Ok(Some(t.to_owned()))
}

/// A point in time for the API. `now`, digits and ages (`10m ago`, `-10m`) become ms since
/// the epoch. Anything else goes as text. The node reads that text as RFC 3339, or rejects
/// it with a 400 that says so.
fn time_arg(s: &str, now: u64) -> Result<Value, ClientError> {
    let s = s.trim();
    if s == "now" {
        return Ok(json!(now));
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(|ms| json!(ms))
            .map_err(|e| ClientError::Usage(format!("{s:?}: {e}")));
    }
    let age = s
        .strip_suffix(" ago")
        .or_else(|| s.strip_prefix('-'))
        .map(str::trim);
    if let Some(age) = age {
        let d = humantime::parse_duration(age)
            .map_err(|e| ClientError::Usage(format!("{s:?} is not an age like `10m ago`: {e}")))?;
        return Ok(json!(now.saturating_sub(d.as_millis() as u64)));
    }
    Ok(json!(s))
}

/// `{for}` or `{until}` of a pin or failover body.
fn hold(h: &HoldArgs, now: u64) -> Result<Map<String, Value>, ClientError> {
    let mut body = Map::new();
    if let Some(f) = &h.for_ {
        body.insert("for".into(), json!(f));
    }
    if let Some(u) = &h.until {
        body.insert("until".into(), time_arg(u, now)?);
    }
    Ok(body)
}

/// Turns a command's JSON answer into its human form. Fails when the answer does not read
/// as the command's [`crate::api`] type.
type Human = Box<dyn FnOnce(Value) -> Result<String, ClientError>>;

/// A [`Human`] that reads the answer as a `T`, then renders it.
fn human<T: DeserializeOwned>(render: impl FnOnce(&T) -> String + 'static) -> Human {
    Box::new(move |value| {
        let answer = serde_json::from_value::<T>(value)
            .map_err(|e| ClientError::Unreadable(e.to_string()))?;
        Ok(render(&answer))
    })
}

/// One command: the call, then its JSON or human rendering.
async fn execute(command: &AdminCommand) -> Result<String, ClientError> {
    let args = command.admin();
    let timeout = humantime::parse_duration(&args.timeout).map_err(|e| {
        ClientError::Usage(format!(
            "--timeout {:?} is not a duration: {e}",
            args.timeout
        ))
    })?;
    let api = Api::new(
        &args.url,
        token(args)?,
        timeout.max(Duration::from_millis(1)),
    )?;
    let call = Call {
        api: &api,
        now: now_ms(),
    };
    let (value, show) = call.run(command).await?;
    if args.json {
        let mut out = serde_json::to_string_pretty(&value)
            .map_err(|e| ClientError::Usage(format!("cannot print the answer: {e}")))?;
        out.push('\n');
        Ok(out)
    } else {
        show(value)
    }
}

/// The answer of one call and how to show it to a person.
type Answered = Result<(Value, Human), ClientError>;

/// One command's call to the admin API.
struct Call<'a> {
    api: &'a Api,
    /// The client's clock, for ages and relative times.
    now: u64,
}

impl Call<'_> {
    /// `<admin>/api/v1/<rest…>`.
    fn v1(&self, rest: &[&str]) -> url::Url {
        let mut segments = vec!["api", "v1"];
        segments.extend_from_slice(rest);
        self.api.url(&segments)
    }

    /// A GET of `/api/v1/<rest…>`, read as a `T` and shown by `render`.
    async fn view<T: DeserializeOwned + 'static>(
        &self,
        rest: &[&str],
        render: fn(&T, u64) -> String,
    ) -> Answered {
        let now = self.now;
        let value = self.api.get(self.v1(rest)).await?;
        Ok((value, human(move |answer: &T| render(answer, now))))
    }

    /// `groups --history` without a group: the switches of every group, one call each.
    async fn histories(&self) -> Answered {
        let groups: crate::api::Groups =
            serde_json::from_value(self.api.get(self.v1(&["groups"])).await?)
                .map_err(|e| ClientError::Unreadable(e.to_string()))?;
        let mut histories = Vec::new();
        for g in &groups.groups {
            histories.push(
                self.api
                    .get(self.v1(&["groups", &g.name, "history"]))
                    .await?,
            );
        }
        let now = self.now;
        let value = json!({ "histories": histories });
        Ok((
            value,
            human(move |h: &render::Histories| render::histories(h, now)),
        ))
    }

    async fn run(&self, command: &AdminCommand) -> Answered {
        match command {
            AdminCommand::Status(_) => self.view(&["status"], render::status).await,
            AdminCommand::Groups(a) => match (&a.group, a.history) {
                (Some(g), true) => self.view(&["groups", g, "history"], render::history).await,
                (None, true) => self.histories().await,
                (Some(g), false) => self.view(&["groups", g], render::group).await,
                (None, false) => self.view(&["groups"], render::groups).await,
            },
            AdminCommand::Queue(_) => self.view(&["queue"], render::queue).await,
            AdminCommand::Endpoints(_) => self.view(&["endpoints"], render::endpoints).await,
            AdminCommand::Records(a) => self.records(a).await,
            AdminCommand::Quarantine(a) => self.quarantine(a).await,
            AdminCommand::Cluster(a) => self.cluster(a).await,
            AdminCommand::Pin(_) | AdminCommand::Unpin(_) | AdminCommand::Failover(_) => {
                self.group_action(command).await
            }
            AdminCommand::Pause(_)
            | AdminCommand::Resume(_)
            | AdminCommand::Skip(_)
            | AdminCommand::Replay(_) => self.endpoint_action(command).await,
        }
    }

    async fn records(&self, a: &RecordsArgs) -> Answered {
        if let Some(seq) = a.seq {
            return self
                .view(&["queue", "records", &seq.to_string()], render::record)
                .await;
        }
        let mut url = self.v1(&["queue", "records"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(from) = a.from {
                q.append_pair("from", &from.to_string());
            }
            if let Some(limit) = a.limit {
                q.append_pair("limit", &limit.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let now = self.now;
        Ok((
            self.api.get(url).await?,
            human(move |records: &Records| render::records(records, now)),
        ))
    }

    async fn quarantine(&self, a: &QuarantineArgs) -> Answered {
        let (b, replay) = match &a.action {
            None => return self.view(&["quarantine"], render::quarantine).await,
            Some(QuarantineAction::Replay(b)) => (b, true),
            Some(QuarantineAction::Delete(b)) => (b, false),
        };
        let seq = b.seq.to_string();
        let mut url = if replay {
            self.v1(&["quarantine", &seq, "replay"])
        } else {
            self.v1(&["quarantine", &seq])
        };
        if let Some(e) = &b.endpoint {
            url.query_pairs_mut().append_pair("endpoint", e);
        }
        Ok(if replay {
            (
                self.api.post(url, None).await?,
                human(render::quarantine_queued),
            )
        } else {
            (
                self.api.delete(url).await?,
                human(render::quarantine_deleted),
            )
        })
    }

    async fn cluster(&self, a: &ClusterArgs) -> Answered {
        Ok(match &a.action {
            None | Some(ClusterAction::Members) => (
                self.api.get(self.v1(&["cluster"])).await?,
                human(render::cluster),
            ),
            Some(ClusterAction::Add { id, addr, learner }) => {
                let body = json!({ "id": id, "addr": addr, "voter": !learner });
                let url = self.v1(&["cluster", "members"]);
                (
                    self.api.post(url, Some(body)).await?,
                    human(render::members),
                )
            }
            Some(ClusterAction::Remove { id }) => {
                let url = self.v1(&["cluster", "members", &id.to_string()]);
                (self.api.delete(url).await?, human(render::members))
            }
            Some(ClusterAction::TransferLeader { id }) => {
                let body = json!({ "to": id });
                let url = self.v1(&["cluster", "transfer-leader"]);
                (
                    self.api.post(url, Some(body)).await?,
                    human(render::transferred),
                )
            }
        })
    }

    /// pin, unpin, failover.
    async fn group_action(&self, command: &AdminCommand) -> Answered {
        let now = self.now;
        match command {
            AdminCommand::Pin(a) => {
                let mut body = hold(&a.hold, now)?;
                body.insert("source".into(), json!(a.source));
                let url = self.v1(&["groups", &a.group, "pin"]);
                let value = self.api.post(url, Some(Value::Object(body))).await?;
                let (group, what) = (a.group.clone(), format!("pinned to {}", a.source));
                Ok((
                    value,
                    human(move |g: &GroupView| render::group_changed(&what, &group, g, now)),
                ))
            }
            AdminCommand::Unpin(a) => {
                let value = self
                    .api
                    .post(self.v1(&["groups", &a.group, "unpin"]), None)
                    .await?;
                let group = a.group.clone();
                Ok((
                    value,
                    human(move |u: &Unpinned| render::unpinned(&group, u)),
                ))
            }
            AdminCommand::Failover(a) => {
                let body = hold(&a.hold, now)?;
                let body = (!body.is_empty()).then_some(Value::Object(body));
                let url = self.v1(&["groups", &a.group, "failover"]);
                let value = self.api.post(url, body).await?;
                let group = a.group.clone();
                Ok((
                    value,
                    human(move |g: &GroupView| {
                        render::group_changed("failover done", &group, g, now)
                    }),
                ))
            }
            _ => unreachable!("run sends only group actions here"),
        }
    }

    /// pause, resume, skip, replay.
    async fn endpoint_action(&self, command: &AdminCommand) -> Answered {
        let (endpoint, action, body, show): (&str, &str, Option<Value>, Human) = match command {
            AdminCommand::Pause(a) => (&a.endpoint, "pause", None, human(render::paused)),
            AdminCommand::Resume(a) => (&a.endpoint, "resume", None, human(render::paused)),
            AdminCommand::Skip(a) => {
                let body = match (a.to_seq, &a.to_time) {
                    (Some(seq), _) => json!({ "to_seq": seq }),
                    (None, Some(t)) => json!({ "to_time": time_arg(t, self.now)? }),
                    (None, None) => json!({}),
                };
                (&a.endpoint, "skip", Some(body), human(render::skipped))
            }
            AdminCommand::Replay(a) => {
                let body = match (a.from_seq, &a.from_time) {
                    (Some(seq), _) => json!({ "from_seq": seq }),
                    (None, Some(t)) => json!({ "from_time": time_arg(t, self.now)? }),
                    (None, None) => json!({}),
                };
                (&a.endpoint, "replay", Some(body), human(render::replayed))
            }
            _ => unreachable!("run sends only endpoint actions here"),
        };
        let value = self
            .api
            .post(self.v1(&["endpoints", endpoint, action]), body)
            .await?;
        Ok((value, show))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_args_accept_epoch_millis_ages_and_now() {
        let now = 1_800_000_000_000;
        assert_eq!(time_arg("now", now).ok(), Some(json!(now)));
        assert_eq!(
            time_arg("1700000000000", now).ok(),
            Some(json!(1_700_000_000_000u64))
        );
        assert_eq!(time_arg("10m ago", now).ok(), Some(json!(now - 600_000)));
        assert_eq!(time_arg("-2h", now).ok(), Some(json!(now - 7_200_000)));
        assert_eq!(
            time_arg("2026-11-21T22:00:00Z", now).ok(),
            Some(json!("2026-11-21T22:00:00Z"))
        );
        assert!(time_arg("soon ago", now).is_err());
    }

    fn parse(argv: &[&str]) -> Result<AdminCommand, clap::Error> {
        use crate::config::{Cli, Command};
        use clap::Parser;
        match Cli::try_parse_from(std::iter::once("highlander").chain(argv.iter().copied()))?
            .command
        {
            Command::Admin(c) => Ok(c),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn global_options_go_anywhere_after_the_command() {
        let c = parse(&["quarantine", "replay", "7", "--endpoint", "lts", "--json"]).expect("ok");
        assert!(c.admin().json);
        match c {
            AdminCommand::Quarantine(q) => match q.action {
                Some(QuarantineAction::Replay(b)) => {
                    assert_eq!((b.seq, b.endpoint.as_deref()), (7, Some("lts")))
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        let c = parse(&["--admin", "http://h:1", "status"]);
        assert!(
            c.is_err(),
            "client options follow the command, not precede it"
        );
        let c = parse(&["status", "--admin", "http://h:1", "--token", "t"]).expect("ok");
        assert_eq!(c.admin().url, "http://h:1");
    }

    #[test]
    fn skip_and_replay_need_exactly_one_target() {
        assert!(parse(&["skip", "lts"]).is_err());
        assert!(parse(&["skip", "lts", "--to-seq", "3", "--to-time", "now"]).is_err());
        assert!(parse(&["replay", "lts", "--from-time", "2h ago"]).is_ok());
        assert!(parse(&["pin", "g", "a", "--for", "1h", "--until", "now"]).is_err());
        assert!(parse(&["records", "5", "--limit", "3"]).is_err());
    }
}
