//! The semantic cache's vector index on Workers: a Durable Object per partition (the embedded
//! default, runs in miniflare), or Cloudflare Vectorize when a `VECTORIZE` binding exists.
//!
//! **Durable Object** (`SEMANTIC_INDEX`, class [`GatewayVectorIndex`]): one object per
//! `index/partition` name, so a query scans one partition only and partitions never share a
//! thread. Rows live in the object's SQLite storage (`entries`: id, the vector as little-endian
//! `f32` blob, metadata, write sequence); the object keeps them in a
//! [`PartitionIndex`] in memory after its first request, so a query is a scan of memory, and
//! writes go through to SQLite before the reply (strongly consistent, read-your-writes). The
//! bound and the eviction order are the core's ([`DEFAULT_PARTITION_CAPACITY`], oldest write
//! first). A jurisdiction pins the object like the counters (`SEMANTIC_INDEX.jurisdiction("eu")`).
//!
//! **Vectorize** (`VECTORIZE`, used for partitions without a jurisdiction when bound): the
//! partition is the namespace; the JSON shape of `upsert`/`query` is built and parsed in
//! `policy::cache::vectorize` and only converted to JavaScript here. Vectorize is eventually
//! consistent (an upsert is queryable after a few seconds), and it serves every index name of
//! the config from the one bound index. A tenant with a jurisdiction never goes to Vectorize,
//! which has none: its partition stays in its jurisdiction's Durable Object.

use std::cell::RefCell;

use edge::{HostError, VectorMatch, VectorPartition};
use policy::cache::vectorize;
use policy::cache::{decode_vector, encode_vector, IndexOp, IndexReply, PartitionIndex, DEFAULT_PARTITION_CAPACITY};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{durable_object, js_sys, DurableObject, Env, Method, Request, Response, Result, SqlStorageValue, State};

use crate::counter::{js_message, post_json};

/// The Durable Object namespace binding of the embedded index (`wrangler.toml`).
pub const SEMANTIC_INDEX_BINDING: &str = "SEMANTIC_INDEX";

/// The optional Vectorize index binding.
pub const VECTORIZE_BINDING: &str = "VECTORIZE";

/// The index of one partition, persisted in the object's SQLite storage.
#[durable_object]
pub struct GatewayVectorIndex {
    state: State,
    /// The rows, loaded on the first request of this instance.
    loaded: RefCell<Option<PartitionIndex>>,
}

impl DurableObject for GatewayVectorIndex {
    fn new(state: State, _env: Env) -> Self {
        Self { state, loaded: RefCell::new(None) }
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        if request.method() != Method::Post {
            return Response::error("vector index objects accept POST with an index operation", 405);
        }
        let op: IndexOp = match serde_json::from_str(&request.text().await?) {
            Ok(op) => op,
            Err(e) => return Response::error(format!("invalid index operation: {e}"), 400),
        };
        // SQLite calls are synchronous: load, apply and write happen with no await between
        // them, so two requests never interleave.
        let reply = self.apply(op)?;
        Response::from_json(&reply)
    }
}

impl GatewayVectorIndex {
    fn apply(&self, op: IndexOp) -> Result<IndexReply> {
        let sql = self.state.storage().sql();
        let mut loaded = self.loaded.borrow_mut();
        let index = match loaded.as_mut() {
            Some(index) => index,
            None => loaded.insert(load(&sql)?),
        };
        match op {
            IndexOp::Upsert { id, vector, metadata } => {
                let written = index.next_write();
                let blob = encode_vector(&vector);
                let evicted = index.upsert(&id, vector, metadata.clone());
                let stored = sql.exec(
                    "INSERT OR REPLACE INTO entries (id, vector, metadata, written) VALUES (?, ?, ?, ?)",
                    vec![SqlStorageValue::String(id), SqlStorageValue::Blob(blob), SqlStorageValue::String(metadata), SqlStorageValue::Integer(written as i64)],
                );
                let deleted = evicted
                    .iter()
                    .try_for_each(|gone| sql.exec("DELETE FROM entries WHERE id = ?", vec![SqlStorageValue::String(gone.clone())]).map(|_| ()));
                if let Err(e) = stored.and(deleted) {
                    *loaded = None; // memory is ahead of storage: reload the truth next time
                    return Err(e);
                }
                Ok(IndexReply::Stored { evicted })
            }
            query @ IndexOp::Query { .. } => Ok(index.apply(query)),
        }
    }
}

/// Create the table if needed and read every row into memory.
fn load(sql: &worker::SqlStorage) -> Result<PartitionIndex> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS entries (id TEXT PRIMARY KEY, vector BLOB NOT NULL, metadata TEXT NOT NULL, written INTEGER NOT NULL)",
        None,
    )?;
    let mut index = PartitionIndex::new(DEFAULT_PARTITION_CAPACITY);
    for row in sql.exec("SELECT id, vector, metadata, written FROM entries", None)?.raw() {
        if let [SqlStorageValue::String(id), SqlStorageValue::Blob(blob), SqlStorageValue::String(metadata), SqlStorageValue::Integer(written)] =
            row?.as_slice()
        {
            if let Some(vector) = decode_vector(blob) {
                index.restore(id.clone(), vector, metadata.clone(), (*written).max(0) as u64);
            }
        }
    }
    Ok(index)
}

/// The Durable Object that holds `at`'s partition, by name `index/partition`.
fn object_name(at: &VectorPartition<'_>) -> String {
    format!("{}/{}", at.index, at.partition)
}

/// The Vectorize binding, when bound and allowed for this partition (no jurisdiction).
fn vectorize_binding(env: &Env, at: &VectorPartition<'_>) -> Option<JsValue> {
    if at.jurisdiction.is_some() {
        return None;
    }
    let env: &JsValue = env.as_ref();
    js_sys::Reflect::get(env, &VECTORIZE_BINDING.into()).ok().filter(JsValue::is_object)
}

/// `binding[method](...args)`, awaited; a throw or rejection is an error with its message.
async fn call_binding(binding: &JsValue, method: &str, args: &[JsValue]) -> std::result::Result<JsValue, HostError> {
    let function: js_sys::Function = js_sys::Reflect::get(binding, &method.into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| HostError(format!("{VECTORIZE_BINDING} has no {method}()")))?;
    let called = function
        .apply(binding, &args.iter().collect::<js_sys::Array>())
        .map_err(|e| HostError(format!("{VECTORIZE_BINDING}.{method}: {}", js_message(&e))))?;
    worker::wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&called))
        .await
        .map_err(|e| HostError(format!("{VECTORIZE_BINDING}.{method}: {}", js_message(&e))))
}

/// A JSON value as a plain JavaScript object (`JSON.parse`, not serde_wasm_bindgen's `Map`s).
fn to_js(value: &serde_json::Value) -> std::result::Result<JsValue, HostError> {
    js_sys::JSON::parse(&value.to_string()).map_err(|e| HostError(js_message(&e)))
}

pub async fn upsert(env: &Env, at: &VectorPartition<'_>, id: &str, vector: &[f32], metadata: &str) -> std::result::Result<(), HostError> {
    if let Some(binding) = vectorize_binding(env, at) {
        let vectors = vectorize::upsert_argument(at.partition, id, vector, metadata).map_err(|e| HostError(e.to_string()))?;
        call_binding(&binding, "upsert", &[to_js(&vectors)?]).await?;
        return Ok(());
    }
    let op = IndexOp::Upsert { id: id.to_owned(), vector: vector.to_vec(), metadata: metadata.to_owned() };
    match post_json(env, SEMANTIC_INDEX_BINDING, &object_name(at), at.jurisdiction, &op).await? {
        IndexReply::Stored { .. } => Ok(()),
        IndexReply::Matches { .. } => Err(HostError("vector index answered a query to an upsert".into())),
    }
}

pub async fn query(env: &Env, at: &VectorPartition<'_>, vector: &[f32], top_k: usize) -> std::result::Result<Vec<VectorMatch>, HostError> {
    if let Some(binding) = vectorize_binding(env, at) {
        let values = to_js(&serde_json::json!(vector))?;
        let reply = call_binding(&binding, "query", &[values, to_js(&vectorize::query_options(at.partition, top_k))?]).await?;
        let text = js_sys::JSON::stringify(&reply).map_err(|e| HostError(js_message(&e)))?;
        let reply: serde_json::Value = serde_json::from_str(&String::from(text)).map_err(|e| HostError(e.to_string()))?;
        return vectorize::parse_query_reply(at.partition, &reply).map_err(|e| HostError(e.to_string()));
    }
    let op = IndexOp::Query { vector: vector.to_vec(), top_k };
    match post_json(env, SEMANTIC_INDEX_BINDING, &object_name(at), at.jurisdiction, &op).await? {
        IndexReply::Matches { matches } => Ok(matches),
        IndexReply::Stored { .. } => Err(HostError("vector index answered an upsert to a query".into())),
    }
}
