//! Creating tasks: a new task is stored (with the runs of its first wave recorded as starting)
//! before its drive starts. A request carrying an idempotency key creates at most one task
//! ([`crate::request_key`]): its repeats find the task the first one created.

use serde_json::Value;

use super::{Service, ServiceError};
use crate::request_key::RequestKey;
use crate::scheduler::Resumed;
use crate::scheduler::data_size::{json_len, over_limit};
use crate::store::StoredTask;
use crate::task::Task;

/// What a request with an idempotency key came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created<R> {
    /// It created the task.
    New(R),
    /// An earlier request with the same key and body had created it: this is that task.
    Replayed(R),
}

impl<R> Created<R> {
    /// What the caller made of the task, either way.
    pub fn get(&self) -> &R {
        match self {
            Created::New(r) | Created::Replayed(r) => r,
        }
    }

    /// The same outcome over `f` of what the caller made of the task.
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Created<S> {
        match self {
            Created::New(r) => Created::New(f(r)),
            Created::Replayed(r) => Created::Replayed(f(r)),
        }
    }
}

impl Service {
    /// Stores a new task over `data` (a JSON object) and starts driving it; returns the task as
    /// stored (no need to read it back).
    pub async fn create_task(&self, data: Value) -> Result<StoredTask, ServiceError> {
        self.create_task_then(data, StoredTask::clone).await
    }

    /// Stores a new task over `data` (a JSON object), hands it as stored to `look` and then starts
    /// driving it; returns what `look` made of it. A caller that needs less than a copy of the
    /// whole task (its id, an answer written from it) spares the copy: the drive takes the task
    /// itself. `look` runs before the drive starts, so it should be quick.
    pub async fn create_task_then<R>(
        &self,
        data: Value,
        look: impl FnOnce(&StoredTask) -> R,
    ) -> Result<R, ServiceError> {
        let (stored, first) = self.store_new(Task::new(self.task_data(data)?)).await?;
        let looked = look(&stored);
        self.spawn_drive_saved(stored.task, stored.revision, first);
        Ok(looked)
    }

    /// [`Service::create_task_then`] for a request carrying `key`: the first request with the
    /// key creates the task ([`Created::New`]); a repeat of it (same scope, key and body) is
    /// handed the task it created, as it is now ([`Created::Replayed`]), and creates nothing.
    /// The same key with another body is refused ([`ServiceError::Invalid`]), naming the task.
    pub async fn create_for_request_then<R>(
        &self,
        key: RequestKey,
        data: Value,
        look: impl FnOnce(&StoredTask) -> R,
    ) -> Result<Created<R>, ServiceError> {
        let task = Task::for_request(key.clone(), self.task_data(data)?);
        let id = task.id.clone();
        match self.store_new(task).await {
            Ok((stored, first)) => {
                let looked = look(&stored);
                self.spawn_drive_saved(stored.task, stored.revision, first);
                return Ok(Created::New(looked));
            }
            Err(ServiceError::Conflict(_)) => {}
            Err(other) => return Err(other),
        }
        let earlier = self.stored_task(&id).await?;
        match earlier.as_ref().map(|stored| (stored, &stored.task.idempotency)) {
            Some((stored, Some(first))) if *first == key => {
                self.inner.metrics.request_replayed();
                Ok(Created::Replayed(look(stored)))
            }
            Some((_, Some(first))) if first.scope == key.scope && first.key == key.key => {
                Err(ServiceError::Invalid(format!(
                    "the idempotency key {:?} was used for another request, which created task {id}; \
                 send a new key with a new request",
                    key.key
                )))
            }
            // Deleted between the refused create and this read (rare): the key is free again.
            None => Err(ServiceError::Conflict(format!(
                "the task of idempotency key {:?} was being deleted; send the request again",
                key.key
            ))),
            // A task of another key (or none) under this id: a clash of 64-bit hashes.
            Some(_) => Err(ServiceError::Conflict(format!(
                "the idempotency key {:?} gives the id of another task ({id}); send another key",
                key.key
            ))),
        }
    }

    /// The task a request carrying `key` created (its scope and key; the body is not compared),
    /// while it exists: what became of a webhook delivery, looked up by its id.
    pub async fn task_for_request(&self, key: &RequestKey) -> Result<StoredTask, ServiceError> {
        let found = self.stored_task(&key.task_id()).await?;
        match found {
            Some(stored)
                if stored
                    .task
                    .idempotency
                    .as_ref()
                    .is_some_and(|created| created.scope == key.scope && created.key == key.key) =>
            {
                Ok(stored)
            }
            _ => Err(ServiceError::NotFound(format!(
                "no task was created with the idempotency key {:?} ({}), or it was deleted",
                key.key, key.scope
            ))),
        }
    }

    /// `data` if it can be a task's: a JSON object within the scheduler's `max_task_bytes`, nested
    /// no deeper than [`crate::task::MAX_NESTING`].
    fn task_data(&self, data: Value) -> Result<Value, ServiceError> {
        if !data.is_object() {
            return Err(ServiceError::Invalid("the task data must be a JSON object".into()));
        }
        if let Some(why) = crate::task::too_deep("the task data", crate::task::nesting(&data)) {
            return Err(ServiceError::Invalid(why));
        }
        // No run could write to data past the scheduler's limit.
        let limit = self.inner.scheduler.settings().max_task_bytes;
        let bytes = json_len(&data);
        if bytes > limit {
            return Err(ServiceError::Invalid(format!(
                "the task data would be {}",
                over_limit(bytes, limit)
            )));
        }
        Ok(data)
    }

    /// Stores `task` with the runs of its first wave recorded as starting, in one write (one
    /// commit fewer before they start; hosts sharing a store leave that to whoever claims it).
    /// A task whose id exists is [`ServiceError::Conflict`].
    async fn store_new(&self, mut task: Task) -> Result<(StoredTask, Vec<Resumed>), ServiceError> {
        let first = match self.inner.cluster {
            Some(_) => Vec::new(),
            None => self.inner.scheduler.first_wave(&mut task),
        };
        let ids: Vec<u64> = first.iter().map(|run| run.run_id).collect();
        let revision = self.inner.store.create_task_starting(&task, &ids).await?;
        let stored = StoredTask {
            updated_at: task.created_at,
            task,
            revision,
        };
        Ok((stored, first))
    }
}
