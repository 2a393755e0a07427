//! What the engine knows of jobs: job records read from this member's state, turned into
//! what the scheduler fires and what the runner runs.
//!
//! Reads here are local (the scheduler and the runner act on the state this member has
//! applied); the API makes its own linearizable reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use steward_raft::Member;

use super::fire::ScheduledJob;
use super::records::{job_index_key, job_key, owner_key, ExecutionRecord, OwnerRecord, JOBS};
use crate::codec::{self, DecodeError};
use crate::exec::{self, JobRefCall, JobRefRunner, StepOutcome};
use crate::jobs::definition::{self, JobDefinition, RetryCount, StepKind};
use crate::jobs::options::{collect_inputs, resolve_options, OptionValue, ResolvedOptions};
use crate::jobs::schedule::{JobSchedule, MisfirePolicy};
use crate::keys::KeyStore;

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub definition: JobDefinition,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Who created or last changed it.
    pub updated_by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] steward_storage::StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("job {0} does not exist")]
    NoJob(String),
    #[error("{0}")]
    Invalid(String),
}

/// A job as the scheduler sees it.
pub struct JobEntry {
    pub job: ScheduledJob,
    pub owner: Option<OwnerRecord>,
    /// The schedule, when the job has one and it is enabled.
    pub schedule: Option<Arc<JobSchedule>>,
    pub misfire: MisfirePolicy,
    /// When the job was last created or changed (ms): no slot before it is due.
    pub since_ms: i64,
}

/// What the runner needs to run one execution.
pub struct RunPlan {
    pub execution: exec::Execution,
}

/// A job's retry setting, resolved.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub count: u32,
    pub delay: Duration,
}

/// Reads jobs from a member's applied state.
#[derive(Clone)]
pub struct Catalog {
    member: Member,
}

impl Catalog {
    pub fn new(member: Member) -> Catalog {
        Catalog { member }
    }

    /// The project of job `uuid`.
    pub fn project_of(&self, uuid: &str) -> Result<Option<String>, CatalogError> {
        match self.member.kv().get(&job_index_key(uuid))? {
            Some(kv) => Ok(Some(codec::decode(&kv.value)?)),
            None => Ok(None),
        }
    }

    /// Job `uuid` with its project.
    pub fn job(&self, uuid: &str) -> Result<Option<(String, JobRecord)>, CatalogError> {
        let Some(project) = self.project_of(uuid)? else { return Ok(None) };
        match self.member.kv().get(&job_key(&project, uuid))? {
            Some(kv) => Ok(Some((project, codec::decode(&kv.value)?))),
            None => Ok(None),
        }
    }

    fn owner(&self, uuid: &str) -> Result<Option<(OwnerRecord, Vec<u8>)>, CatalogError> {
        match self.member.kv().get(&owner_key(uuid))? {
            Some(kv) => Ok(Some((codec::decode(&kv.value)?, kv.value))),
            None => Ok(None),
        }
    }

    /// Every job, as the scheduler sees it.
    pub fn all_jobs(&self) -> Result<Vec<JobEntry>, CatalogError> {
        let mut out = Vec::new();
        for (key, kv) in self.member.kv().range(JOBS)? {
            let Some((project, _)) = key[JOBS.len()..].split_once('/') else { continue };
            let record: JobRecord = codec::decode(&kv.value)?;
            match self.entry(project, record) {
                Ok(e) => out.push(e),
                Err(e) => tracing::warn!(error = %e, %key, "job not schedulable"),
            }
        }
        Ok(out)
    }

    /// Job `uuid` as the scheduler sees it.
    pub fn job_entry(&self, uuid: &str) -> Result<Option<JobEntry>, CatalogError> {
        match self.job(uuid)? {
            Some((project, record)) => Ok(Some(self.entry(&project, record)?)),
            None => Ok(None),
        }
    }

    fn entry(&self, project: &str, record: JobRecord) -> Result<JobEntry, CatalogError> {
        let def = record.definition;
        let uuid = def.uuid().ok_or_else(|| CatalogError::Invalid("stored job without uuid".into()))?.to_string();
        let (owner, owner_bytes) = match self.owner(&uuid)? {
            Some((o, b)) => (Some(o), b),
            None => (None, Vec::new()),
        };
        let schedule = if def.is_scheduled() {
            JobSchedule::from_definition(&def).map_err(|e| CatalogError::Invalid(e.to_string()))?.map(Arc::new)
        } else {
            None
        };
        // Scheduled runs get the options' defaults; a required option without one makes the
        // run fail with a message in its log, as Rundeck does, rather than silently not fire.
        let options = resolve_options(&def.options, &Default::default()).map(|r| plain_options(&r)).unwrap_or_default();
        Ok(JobEntry {
            job: ScheduledJob {
                uuid,
                project: project.to_string(),
                name: def.name.clone(),
                group: def.group.clone().unwrap_or_default(),
                owner_record: owner_bytes,
                multiple_executions: def.multiple_executions,
                loglevel: def.log_level().as_str().to_string(),
                options,
                user: record.updated_by.clone(),
            },
            owner,
            schedule,
            misfire: def.misfire_policy(),
            since_ms: record.updated_ms,
        })
    }

    /// Job `uuid`'s retry setting, if it retries.
    pub fn retry_policy(&self, uuid: &str) -> Result<Option<RetryPolicy>, CatalogError> {
        let Some((_, record)) = self.job(uuid)? else { return Ok(None) };
        let Some(retry) = &record.definition.retry else { return Ok(None) };
        let count = match retry.count() {
            RetryCount::Fixed(n) => n,
            // An option reference is resolved from the job's default; unresolvable means none.
            RetryCount::Expression(_) => return Ok(None),
        };
        if count == 0 {
            return Ok(None);
        }
        let delay = retry.delay.as_ref().and_then(|d| d.fixed()).unwrap_or_default();
        Ok(Some(RetryPolicy { count, delay }))
    }

    /// The steps, environment and limits of execution `id`, from its job as stored now. Secure
    /// options with a `storagePath` are read from key storage here, on the member that runs
    /// the execution: their values reach the steps only as environment variables and are
    /// masked in the output.
    pub async fn run_plan(&self, rec: &ExecutionRecord, id: u64, keys: &KeyStore) -> Result<RunPlan, CatalogError> {
        let (_, record) = self.job(&rec.job_uuid)?.ok_or_else(|| CatalogError::NoJob(rec.job_uuid.clone()))?;
        let def = &record.definition;
        let given: serde_json::Map<String, serde_json::Value> =
            rec.options.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        let inputs = collect_inputs(None, Some(&given)).map_err(|e| CatalogError::Invalid(e.to_string()))?;
        let mut resolved = resolve_options(&def.options, &inputs).map_err(|e| CatalogError::Invalid(e.to_string()))?;
        resolve_secrets(keys, &mut resolved).await?;
        let (env, secrets) = option_environment(&resolved)?;
        let vars = exec::JobVars {
            id: rec.job_uuid.clone(),
            exec_id: id,
            name: rec.job_name.clone(),
            group: rec.job_group.clone(),
            project: rec.project.clone(),
            username: rec.user.clone(),
            loglevel: rec.loglevel.clone(),
            scheduled_time: rec.scheduled_ms.and_then(chrono::DateTime::from_timestamp_millis),
            execution_type: Some(
                match rec.trigger {
                    super::records::Trigger::Schedule => "scheduled",
                    _ if rec.scheduled_ms.is_some() => "user-scheduled",
                    _ => "user",
                }
                .to_string(),
            ),
            retry_attempt: rec.attempt.saturating_sub(1),
            server_uuid: Some(self.member.node().uuid.clone()),
            server_url: Some(format!("http://{}", self.member.node().http_addr)),
            url: Some(format!("http://{}/api/59/execution/{id}", self.member.node().http_addr)),
        };
        let mut all_env = vars.to_env();
        all_env.extend(env);
        let execution = exec::Execution {
            sequence: to_sequence(def)?,
            context: exec::Context {
                working_dir: None,
                env: all_env,
                secrets,
                node: Some(self.member.node().uuid.clone()),
                user: Some(rec.user.clone()),
            },
            timeout: def.timeout.as_ref().and_then(|t| t.fixed()),
        };
        Ok(RunPlan { execution })
    }

    /// Finds the job a job reference names: by uuid, or by group and name in its project.
    fn referenced(&self, r: &exec::JobRef, project: &str) -> Result<JobRecord, CatalogError> {
        if let Some(uuid) = &r.uuid {
            return self.job(uuid)?.map(|(_, j)| j).ok_or_else(|| CatalogError::NoJob(uuid.clone()));
        }
        let name = r.name.clone().unwrap_or_default();
        let project = r.project.clone().unwrap_or_else(|| project.to_string());
        let group = r.group.clone().unwrap_or_default();
        for (_, kv) in self.member.kv().range(&format!("{JOBS}{project}/"))? {
            let j: JobRecord = codec::decode(&kv.value)?;
            if j.definition.name == name && j.definition.group.clone().unwrap_or_default() == group {
                return Ok(j);
            }
        }
        Err(CatalogError::NoJob(format!(
            "{project}:{}",
            if group.is_empty() { name } else { format!("{group}/{name}") }
        )))
    }
}

/// Reads every secure option that names a key storage path.
async fn resolve_secrets(keys: &KeyStore, resolved: &mut ResolvedOptions) -> Result<(), CatalogError> {
    let paths: Vec<(String, String)> =
        resolved.key_storage_paths().into_iter().map(|(o, p)| (o.to_string(), p.to_string())).collect();
    let mut found = BTreeMap::new();
    for (option, path) in paths {
        let secret = crate::keys::resolve(keys, &path)
            .await
            .map_err(|e| CatalogError::Invalid(format!("option '{option}': key storage path {path}: {e}")))?;
        let text = secret
            .as_str()
            .ok_or_else(|| CatalogError::Invalid(format!("option '{option}': the key at {path} is not text")))?
            .to_string();
        found.insert(path, text);
    }
    resolved
        .resolve_key_storage(|p| found.get(p).cloned().ok_or(()))
        .map_err(|(o, _)| CatalogError::Invalid(format!("option '{o}': its key storage value could not be read")))
}

/// The plain (non-secure) option values, for the execution record.
pub fn plain_options(r: &ResolvedOptions) -> BTreeMap<String, String> {
    r.values
        .iter()
        .filter_map(|(k, o)| match &o.value {
            OptionValue::Plain(v) => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

/// Environment variables, as `(name, value)`.
type Env = Vec<(String, String)>;

/// `RD_OPTION_*` variables and the values to mask in the output.
fn option_environment(r: &ResolvedOptions) -> Result<(Env, Vec<String>), CatalogError> {
    let env = r.environment().map_err(|e| CatalogError::Invalid(e.to_string()))?;
    let secrets = r
        .values
        .values()
        .filter_map(|o| match &o.value {
            OptionValue::Secret(s) => Some(s.expose().to_string()),
            _ => None,
        })
        .collect();
    Ok((env, secrets))
}

/// Splits a step's `args` the way a shell would (quotes group words).
fn split_args(args: Option<&str>) -> Result<Vec<String>, CatalogError> {
    match args {
        None => Ok(Vec::new()),
        Some(a) => shell_words::split(a).map_err(|e| CatalogError::Invalid(format!("args '{a}': {e}"))),
    }
}

fn to_step(step: &definition::Step) -> Result<exec::Step, CatalogError> {
    let kind = step.kind().map_err(CatalogError::Invalid)?;
    let kind = match kind {
        StepKind::Exec { command } => exec::StepKind::Exec { command: command.to_string() },
        StepKind::Script { body, args, interpreter, .. } => exec::StepKind::Script {
            body: body.to_string(),
            args: split_args(args)?,
            interpreter: interpreter.map(str::to_string),
        },
        StepKind::ScriptFile { path, args, interpreter, .. } => exec::StepKind::ScriptFile {
            path: path.into(),
            args: split_args(args)?,
            interpreter: interpreter.map(str::to_string),
        },
        StepKind::JobRef(r) => exec::StepKind::JobRef(exec::JobRef {
            uuid: r.uuid.clone(),
            name: r.name.clone(),
            group: r.group.clone(),
            project: r.project.clone(),
            args: r.args.clone(),
        }),
        StepKind::ScriptUrl { url, .. } => {
            return Err(CatalogError::Invalid(format!("scripturl steps ({url}) are not supported by this version")))
        }
        StepKind::Plugin { provider, .. } => {
            return Err(CatalogError::Invalid(format!("plugin steps ({provider}) are not supported by this version")))
        }
    };
    let mut out = exec::Step::new(kind);
    out.description = step.description.clone();
    if let Some(h) = &step.errorhandler {
        out = out.with_error_handler(to_step(h)?, h.keepgoing_on_success.unwrap_or(false));
    }
    Ok(out)
}

/// A job's workflow as the executor's steps.
pub fn to_sequence(def: &JobDefinition) -> Result<exec::Sequence, CatalogError> {
    let steps = def.sequence.commands.iter().map(to_step).collect::<Result<Vec<_>, _>>()?;
    Ok(exec::Sequence { steps, keepgoing: def.sequence.keepgoing })
}

/// Runs job references inline, in the referencing execution's log, as Rundeck does by default.
pub struct CatalogJobRefs {
    pub catalog: Catalog,
    pub keys: KeyStore,
}

impl JobRefRunner for CatalogJobRefs {
    fn run_job_ref<'a>(&'a self, call: JobRefCall<'a>) -> BoxFuture<'a, StepOutcome> {
        async move {
            let project = call
                .context
                .env
                .iter()
                .find(|(k, _)| k == "RD_JOB_PROJECT")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let job = match self.catalog.referenced(call.job, &project) {
                Ok(j) => j,
                Err(e) => return StepOutcome::Failed(exec::FailureReason::JobRef(e.to_string())),
            };
            let prepared = async {
                let inputs =
                    collect_inputs(call.job.args.as_deref(), None).map_err(|e| CatalogError::Invalid(e.to_string()))?;
                let mut resolved = resolve_options(&job.definition.options, &inputs)
                    .map_err(|e| CatalogError::Invalid(e.to_string()))?;
                resolve_secrets(&self.keys, &mut resolved).await?;
                let (env, secrets) = option_environment(&resolved)?;
                let mut context = call.context.clone();
                // The referenced job sees its own options, not the caller's.
                context.env.retain(|(k, _)| !k.starts_with("RD_OPTION_"));
                context.env.extend(env);
                context.secrets.extend(secrets);
                Ok::<_, CatalogError>((to_sequence(&job.definition)?, context))
            }
            .await;
            let (sequence, context) = match prepared {
                Ok(p) => p,
                Err(e) => return StepOutcome::Failed(exec::FailureReason::JobRef(e.to_string())),
            };
            let prefix = format!("{}/", call.step_ctx);
            let result = call.executor.run_sequence(&sequence, &prefix, &context, call.sink, call.control).await;
            if result.failed || result.interrupted.is_some() {
                StepOutcome::Failed(exec::FailureReason::JobRef(format!("job {} failed", job.definition.full_name())))
            } else {
                StepOutcome::Succeeded
            }
        }
        .boxed()
    }
}
