//! The authorize phase: the model exists, serves this operation, and the caller may use it
//! (the tenant's list bounds every caller; a virtual key's list narrows its consumer's; a JWT's
//! tier decides for token callers). The models endpoints list exactly what passes.

use serde_json::{json, Value};

use crate::config::{Config, ModelKind, ModelRoute, ProviderConfig};
use crate::error::GatewayError;
use crate::http::Response;
use crate::pipeline::context::{Caller, RequestContext};

/// Find the model's route and provider and check the caller may use it for this operation.
pub fn authorize<'c>(
    config: &'c Config,
    ctx: &mut RequestContext,
    model: &str,
    kind: ModelKind,
    operation: &'static str,
) -> Result<(&'c ModelRoute, &'c ProviderConfig), GatewayError> {
    ctx.model = Some(model.to_string());
    let route = config.models.get(model).ok_or_else(|| GatewayError::UnknownModel { model: model.to_string() })?;
    if !may_use(config, &ctx.caller, model) {
        return Err(GatewayError::ModelNotAllowed { model: model.to_string() });
    }
    if route.kind != kind {
        return Err(GatewayError::UnsupportedOperation { model: model.to_string(), operation });
    }
    ctx.provider = Some(route.provider.clone());
    ctx.upstream_model = Some(route.upstream_model.clone());
    let provider = config.providers.get(&route.provider).expect("validated: every model names a configured provider");
    Ok((route, provider))
}

fn may_use(config: &Config, caller: &Caller, model: &str) -> bool {
    // A tenant-wide list bounds every caller of the tenant, whatever their own list says.
    let tenant_models = caller.tenant.as_deref().and_then(|t| config.tenants.get(t)).and_then(|t| t.models.as_ref());
    if tenant_models.is_some_and(|m| !m.allows(model)) {
        return false;
    }
    if let Some(key_models) = &caller.key_models {
        // A virtual key: its own list, within its consumer's when the consumer is configured.
        let consumer_allows = config.access_for(caller.consumer.as_deref()).is_none_or(|a| a.allows(model));
        return key_models.allows(model) && consumer_allows;
    }
    match (&caller.consumer, caller.via_jwt, &config.jwt) {
        (None, ..) => true,
        (Some(_), true, Some(jwt)) => caller.tier.as_ref().and_then(|t| jwt.tiers.get(t)).unwrap_or(&jwt.models).allows(model),
        (Some(_), true, None) => false,
        (Some(_), false, _) => config.access_for(caller.consumer.as_deref()).is_some_and(|a| a.allows(model)),
    }
}

fn model_object(route: &ModelRoute) -> Value {
    json!({ "id": route.name, "object": "model", "created": 0, "owned_by": route.provider })
}

/// `GET /v1/models`: the models this caller may use.
pub fn list_models(config: &Config, caller: &Caller) -> Response {
    let data: Vec<Value> = config
        .models
        .values()
        .filter(|route| may_use(config, caller, &route.name))
        .map(model_object)
        .collect();
    Response::json(200, &json!({ "object": "list", "data": data }))
}

/// `GET /v1/models/{id}`: one model, only if this caller may use it (else it does not exist).
pub fn get_model(config: &Config, caller: &Caller, id: &str) -> Result<Response, GatewayError> {
    match config.models.get(id) {
        Some(route) if may_use(config, caller, id) => Ok(Response::json(200, &model_object(route))),
        _ => Err(GatewayError::UnknownModel { model: id.to_string() }),
    }
}
