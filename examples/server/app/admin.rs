//! The dashboard's actions as an admin JSON API under `/admin`, behind
//! the admin token.

use authio_mcp::axum::into_axum;
use authio_mcp::client::{Client, RegisteredClientId};
use authio_mcp::dcr::{IatId, IatOptions};
use authio_mcp::grant::{GrantId, GrantSummary, Subject};
use authio_mcp::http::{error_response, json};
use authio_mcp::presentation::ProjectDisplay;
use authio_mcp::project::{DcrMode, KnownResource, ProjectId, ProjectSettings};
use authio_mcp::resource::ResourceUri;
use authio_mcp::scope::ScopeSet;
use authio_mcp::store::{AuditCursor, AuditQuery, PageCursor, PageRequest, StoreErrorKind};
use authio_mcp::{ErrorCode, OAuthError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;

use super::App;

/// `POST /admin/cimd/resolve`: the CIMD preview with its cache state
/// (`from_cache`, `cache_expires_at`), behind the admin token; the
/// anonymous `/oauth2/cimd/resolve` answers only the validation result.
pub(super) async fn admin_cimd_resolve(State(app): State<App>, req: axum::extract::Request) -> Response {
    if let Err(e) = app.check_admin(req.headers()) {
        return admin_error(&e);
    }
    match authio_mcp::axum::buffer(authio_mcp::axum::with_request_source(req), 64 * 1024).await {
        Ok(req) => authio_mcp::axum::into_axum(app.endpoints.cimd_resolve_with_cache_details(&req).await),
        Err(r) => r,
    }
}

pub(super) fn admin_error(e: &OAuthError) -> Response {
    into_axum(error_response(e))
}

fn json_ok(value: &serde_json::Value) -> Response {
    into_axum(json(StatusCode::OK, serde_json::to_vec(value).unwrap_or_default()))
}

fn project_id(id: &str) -> Result<ProjectId, OAuthError> {
    ProjectId::new(id).map_err(|_| OAuthError::unknown_project())
}

fn admin_failure(e: authio_mcp::server::AdminError) -> OAuthError {
    use authio_mcp::server::AdminError;
    match e {
        AdminError::UnknownProject => OAuthError::unknown_project(),
        AdminError::InvalidSettings(s) => OAuthError::with_description(ErrorCode::InvalidRequest, s.to_string()),
        AdminError::UnknownIat => {
            OAuthError::with_description(ErrorCode::InvalidRequest, "unknown IAT").with_status(StatusCode::NOT_FOUND)
        }
        AdminError::InvalidIatOptions(e) => OAuthError::with_description(ErrorCode::InvalidRequest, e.to_string()),
        AdminError::Conflict => {
            OAuthError::with_description(ErrorCode::TemporarilyUnavailable, "concurrent update; retry")
        }
        AdminError::UnknownClient => not_found("unknown client"),
        AdminError::UnknownGrant => not_found("unknown grant"),
        // A bound reached is not a failure: the caller may retry later.
        AdminError::Store(e) if e.kind() == StoreErrorKind::CapacityExceeded => OAuthError::with_description(
            ErrorCode::TemporarilyUnavailable,
            "storage capacity reached; retry later",
        ),
        AdminError::Store(e) => {
            // The cause goes to the log, never to the response.
            e.log();
            OAuthError::server_error()
        }
        _ => OAuthError::server_error(),
    }
}

fn not_found(what: &'static str) -> OAuthError {
    OAuthError::with_description(ErrorCode::InvalidRequest, what).with_status(StatusCode::NOT_FOUND)
}

fn bad_request(description: impl Into<String>) -> OAuthError {
    OAuthError::with_description(ErrorCode::InvalidRequest, description.into())
}

/// The JSON body of an admin request: `Content-Type: application/json`
/// (or a `+json` type) is required, else 415 with a JSON error; a body
/// that does not parse is 400 naming the problem.
fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, OAuthError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")));
    if !json {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidRequest,
            "the body must be JSON: send Content-Type: application/json",
        )
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

pub(super) async fn admin_get_project(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let settings = app.endpoints.server().project(&p).await.map_err(admin_failure)?;
        Ok(serde_json::json!({"id": p, "settings": settings, "lints": settings.lints()}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

#[derive(Deserialize)]
struct McpSwitch {
    enabled: bool,
}

pub(super) async fn admin_set_mcp(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let body: McpSwitch = json_body(&headers, &body)?;
        let (settings, changes) = app
            .endpoints
            .server()
            .set_mcp_enabled(&p, body.enabled)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({"settings": settings, "changes": changes, "lints": settings.lints()}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// The fields `PATCH /admin/projects/{id}` may change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectPatch {
    dcr_mode: Option<DcrMode>,
    cimd_enabled: Option<bool>,
    access_token_ttl: Option<i64>,
    refresh_token_ttl: Option<i64>,
    code_ttl: Option<authio_mcp::project::CodeTtl>,
    scopes_supported: Option<ScopeSet>,
    default_scopes: Option<ScopeSet>,
    default_resource: Option<ResourceUri>,
    require_resource: Option<bool>,
    resource_policy: Option<authio_mcp::project::ResourcePolicy>,
    /// The whole list of known resources (`[{"resource", "name"}]`),
    /// replacing the current one.
    resources: Option<authio_mcp::project::KnownResources>,
    cimd: Option<authio_mcp::cimd::CimdPolicy>,
    access_token_format: Option<authio_mcp::project::AccessTokenFormat>,
    signing: Option<authio_mcp::keys::SigningSettings>,
    strict_mode: Option<bool>,
    refresh_reuse_grace: Option<i64>,
    redirect_uri_policy: Option<authio_mcp::redirect_uri::RedirectUriPolicy>,
    tokenless_registration: Option<authio_mcp::tokenless::TokenlessRegistration>,
    /// The consent page's service name and logo, scope descriptions and
    /// resource names (replaced as a whole).
    display: Option<ProjectDisplay>,
}

pub(super) async fn admin_patch_project(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let patch: ProjectPatch = json_body(&headers, &body)?;
        let settings = app
            .endpoints
            .server()
            .edit_project(&p, |mut s| {
                apply_patch(&mut s, &patch);
                s
            })
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({"id": p, "settings": settings, "lints": settings.lints()}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

fn apply_patch(s: &mut ProjectSettings, patch: &ProjectPatch) {
    if let Some(v) = patch.dcr_mode {
        s.dcr_mode = v;
    }
    if let Some(v) = patch.cimd_enabled {
        s.cimd_enabled = v;
    }
    if let Some(v) = patch.access_token_ttl {
        s.access_token_ttl = time::Duration::seconds(v);
    }
    if let Some(v) = patch.refresh_token_ttl {
        s.refresh_token_ttl = time::Duration::seconds(v);
    }
    if let Some(v) = patch.code_ttl {
        s.code_ttl = v;
    }
    if let Some(v) = &patch.scopes_supported {
        s.scopes_supported = v.clone();
    }
    if let Some(v) = &patch.default_scopes {
        s.default_scopes = v.clone();
    }
    if let Some(v) = &patch.default_resource {
        s.default_resource = Some(v.clone());
    }
    if let Some(v) = patch.require_resource {
        s.require_resource = v;
    }
    if let Some(v) = patch.resource_policy {
        s.resource_policy = v;
    }
    if let Some(v) = &patch.resources {
        s.resources = v.clone();
    }
    if let Some(v) = &patch.cimd {
        s.cimd = v.clone();
    }
    if let Some(v) = patch.access_token_format {
        s.access_token_format = v;
    }
    if let Some(v) = patch.signing {
        s.signing = v;
    }
    if let Some(v) = patch.strict_mode {
        s.strict_mode = v;
    }
    if let Some(v) = patch.refresh_reuse_grace {
        s.refresh_reuse_grace = time::Duration::seconds(v);
    }
    if let Some(v) = patch.redirect_uri_policy {
        s.redirect_uri_policy = v;
    }
    if let Some(v) = &patch.tokenless_registration {
        s.tokenless_registration = v.clone();
    }
    if let Some(v) = &patch.display {
        s.display = v.clone();
    }
}

/// `GET /admin/projects/{id}/audit` query: `event` (a dotted name),
/// `since` / `until` (unix seconds), `limit` (default 500), `before` (the
/// `X-Next-Cursor` of the previous page).
#[derive(Default)]
struct AuditParams {
    event: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
    before: Option<u64>,
}

impl AuditParams {
    fn parse(query: &str) -> Result<Self, OAuthError> {
        let mut p = Self::default();
        let bad = |name: &str| OAuthError::with_description(ErrorCode::InvalidRequest, format!("bad {name}"));
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "event" => p.event = Some(v.into_owned()),
                "since" => p.since = Some(v.parse().map_err(|_| bad("since"))?),
                "until" => p.until = Some(v.parse().map_err(|_| bad("until"))?),
                "limit" => p.limit = Some(v.parse().map_err(|_| bad("limit"))?),
                "before" => p.before = Some(v.parse().map_err(|_| bad("before"))?),
                _ => {}
            }
        }
        Ok(p)
    }
}

/// One page of the project's audit events, oldest first (the newest
/// `limit` of the selection); `X-Next-Cursor` names the older page.
pub(super) async fn admin_audit(
    State(app): State<App>,
    Path(id): Path<String>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let params = AuditParams::parse(uri.query().unwrap_or(""))?;
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        app.endpoints.server().project(&p).await.map_err(admin_failure)?;
        let time = |s: Option<i64>| s.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok());
        let mut query = AuditQuery::new(p)
            .between(time(params.since), time(params.until))
            .limit(params.limit.unwrap_or(500))
            .before(params.before.map(AuditCursor::new));
        if let Some(event) = params.event {
            query = query.event(event);
        }
        let mut page = app.audit.query(&query).await.map_err(|_| OAuthError::server_error())?;
        page.events.reverse();
        Ok((serde_json::to_value(&page.events).unwrap_or_default(), page.next))
    }
    .await;
    match result {
        Ok((v, next)) => {
            let mut response = json_ok(&v);
            if let Some(next) = next
                && let Ok(value) = HeaderValue::from_str(&next.get().to_string())
            {
                response.headers_mut().insert("x-next-cursor", value);
            }
            response
        }
        Err(e) => admin_error(&e),
    }
}

/// `GET /admin/projects/{id}/audit/rejections`: the counts of rejected
/// anonymous requests per minute, event and reason, from whichever store
/// keeps the audit log (memory, SQLite or PostgreSQL).
pub(super) async fn admin_audit_rejections(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        app.endpoints.server().project(&p).await.map_err(admin_failure)?;
        let counts = app
            .audit
            .rejection_counts(&p)
            .await
            .map_err(|_| OAuthError::server_error())?;
        Ok(serde_json::to_value(counts).unwrap_or_default())
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `POST /admin/projects/{id}/iats` body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IatRequest {
    max_uses: Option<u32>,
    /// Seconds.
    expires_in: Option<i64>,
    label: Option<String>,
}

pub(super) async fn admin_issue_iat(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let req: IatRequest = if body.is_empty() {
            IatRequest::default()
        } else {
            json_body(&headers, &body)?
        };
        let mut options = IatOptions::new();
        if let Some(n) = req.max_uses {
            options = options.max_uses(n);
        }
        if let Some(secs) = req.expires_in {
            options = options.ttl(time::Duration::seconds(secs));
        }
        if let Some(label) = req.label {
            options = options.label(label);
        }
        let issued = app
            .endpoints
            .server()
            .issue_iat(&p, options)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({"id": issued.id, "token": issued.token.expose_secret(), "iat": issued.view}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

pub(super) async fn admin_list_iats(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let list = app.endpoints.server().list_iats(&p).await.map_err(admin_failure)?;
        Ok(serde_json::to_value(list).unwrap_or_default())
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

pub(super) async fn admin_revoke_iat(
    State(app): State<App>,
    Path((id, iat_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let iat =
            IatId::new(iat_id).map_err(|_| OAuthError::with_description(ErrorCode::InvalidRequest, "unknown IAT"))?;
        let view = app
            .endpoints
            .server()
            .revoke_iat(&p, &iat)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::to_value(view).unwrap_or_default())
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `POST /admin/projects/{id}/signing-keys/{kid}/revoke`: the emergency
/// revocation of a signing key believed compromised (unpublished and
/// replaced at once); answers `{"kid": ..., "replaced_by": ...}`.
pub(super) async fn admin_revoke_signing_key(
    State(app): State<App>,
    Path((id, kid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let unknown = || {
            OAuthError::with_description(ErrorCode::InvalidRequest, "unknown signing key")
                .with_status(StatusCode::NOT_FOUND)
        };
        let kid = authio_mcp::keys::KeyId::new(kid).map_err(|_| unknown())?;
        let r = app
            .endpoints
            .server()
            .revoke_signing_key(&p, &kid)
            .await
            .map_err(|e| match e {
                authio_mcp::server::AdminError::UnknownSigningKey => unknown(),
                e => admin_failure(e),
            })?;
        Ok(serde_json::json!({
            "kid": r.kid.as_str(),
            "replaced_by": r.replaced_by.as_ref().map(authio_mcp::keys::KeyId::as_str),
        }))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `?limit=&after=` of the admin listings: at most `limit` items (default
/// 50, at most 500) after the cursor a previous page returned as `next`.
fn page_request(uri: &http::Uri) -> Result<PageRequest, OAuthError> {
    let mut limit = 50;
    let mut after = None;
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=authio_mcp::store::MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| bad_request("limit must be a number from 1 to 500"))?;
            }
            "after" => {
                after =
                    Some(PageCursor::parse(&v).map_err(|_| bad_request("after is not a cursor this API returned"))?);
            }
            _ => {}
        }
    }
    Ok(PageRequest::first(limit).after(after))
}

/// A registered client as the admin API shows it: its public metadata,
/// state and times; never its secret or the secret's hash.
fn client_view(client: &Client) -> serde_json::Value {
    let mut v = serde_json::to_value(&client.metadata).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("client_id".into(), client.client_id.as_str().into());
        obj.insert("issued_at".into(), client.issued_at.unix_timestamp().into());
        obj.insert("confidential".into(), client.is_confidential().into());
        obj.insert(
            "secret_expires_at".into(),
            client.secret_expires_at.map(|t| t.unix_timestamp()).into(),
        );
        obj.insert("disabled".into(), client.is_disabled().into());
        obj.insert(
            "disabled_at".into(),
            client.disabled_at.map(|t| t.unix_timestamp()).into(),
        );
    }
    v
}

/// A grant as the admin API shows it.
fn grant_view(s: &GrantSummary) -> serde_json::Value {
    serde_json::json!({
        "grant_id": s.grant.id,
        "client_id": s.grant.client_id.as_str(),
        "subject": s.grant.subject.as_str(),
        "scope": s.grant.scopes.to_string(),
        "resources": s.grant.resources.audiences(),
        "granted_at": s.grant.granted_at.unix_timestamp(),
        "last_used_at": s.last_used_at.map(|t| t.unix_timestamp()),
        "expires_at": s.expires_at.unix_timestamp(),
    })
}

fn client_id(id: &str) -> Result<RegisteredClientId, OAuthError> {
    RegisteredClientId::new(id).map_err(|_| not_found("unknown client"))
}

fn subject(s: &str) -> Result<Subject, OAuthError> {
    Subject::new(s).map_err(|e| bad_request(e.to_string()))
}

/// The project's known resources: `{"default_resource", "resource_policy",
/// "resources": [{"resource", "name", "default"}]}` (the default resource
/// first, named when it is also listed).
fn resources_view(settings: &ProjectSettings) -> serde_json::Value {
    let mut list = Vec::new();
    if let Some(d) = &settings.default_resource {
        list.push(serde_json::json!({
            "resource": d.canonical(),
            "name": settings.resource_name(d),
            "default": true,
        }));
    }
    for k in &settings.resources {
        if settings.default_resource.as_ref() != Some(&k.resource) {
            list.push(serde_json::json!({"resource": k.resource.canonical(), "name": k.name, "default": false}));
        }
    }
    serde_json::json!({
        "default_resource": settings.default_resource.as_ref().map(ResourceUri::canonical),
        "resource_policy": settings.resource_policy,
        "resources": list,
        "lints": settings.lints(),
    })
}

/// `GET /admin/projects/{id}/resources`.
pub(super) async fn admin_list_resources(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let settings = app.endpoints.server().project(&p).await.map_err(admin_failure)?;
        Ok(resources_view(&settings))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `POST /admin/projects/{id}/resources` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceEntry {
    resource: ResourceUri,
    name: String,
}

/// `POST /admin/projects/{id}/resources`: adds a known resource, or
/// renames a listed one (`{"resource", "name"}`).
pub(super) async fn admin_put_resource(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let entry: ResourceEntry = json_body(&headers, &body)?;
        let known = KnownResource::new(entry.resource, entry.name).map_err(|e| bad_request(e.to_string()))?;
        let settings = app
            .endpoints
            .server()
            .edit_project(&p, |mut s| {
                s.resources.upsert(known.clone());
                s
            })
            .await
            .map_err(admin_failure)?;
        Ok(resources_view(&settings))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `DELETE /admin/projects/{id}/resources?resource=URI`: removes a listed
/// resource (404 when it is not listed). The default resource stays known
/// as long as it is the default.
pub(super) async fn admin_remove_resource(
    State(app): State<App>,
    Path(id): Path<String>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let raw = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "resource")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| bad_request("the resource query parameter is required"))?;
        let resource = ResourceUri::parse(raw).map_err(|e| bad_request(e.to_string()))?;
        let server = app.endpoints.server();
        if !server
            .project(&p)
            .await
            .map_err(admin_failure)?
            .resources
            .contains(&resource)
        {
            return Err(not_found("the resource is not listed"));
        }
        let settings = server
            .edit_project(&p, |mut s| {
                s.resources.remove(&resource);
                s
            })
            .await
            .map_err(admin_failure)?;
        Ok(resources_view(&settings))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `GET /admin/projects/{id}/clients?limit=&after=`: one page of the
/// registered clients, oldest first: `{"clients": [...], "next": cursor or
/// null}`.
pub(super) async fn admin_list_clients(
    State(app): State<App>,
    Path(id): Path<String>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let page = page_request(&uri)?;
        let page = app
            .endpoints
            .server()
            .list_clients(&p, &page)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({
            "clients": page.items.iter().map(client_view).collect::<Vec<_>>(),
            "next": page.next.map(|c| c.to_string()),
        }))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `GET /admin/projects/{id}/clients/{client_id}`.
pub(super) async fn admin_get_client(
    State(app): State<App>,
    Path((id, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let client = app
            .endpoints
            .server()
            .client(&p, &client_id(&cid)?)
            .await
            .map_err(admin_failure)?;
        Ok(client_view(&client))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `POST /admin/projects/{id}/clients/{client_id}/disable`.
pub(super) async fn admin_disable_client(
    State(app): State<App>,
    Path((id, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let client = app
            .endpoints
            .server()
            .disable_client(&p, &client_id(&cid)?)
            .await
            .map_err(admin_failure)?;
        Ok(client_view(&client))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `POST /admin/projects/{id}/clients/{client_id}/enable`.
pub(super) async fn admin_enable_client(
    State(app): State<App>,
    Path((id, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let client = app
            .endpoints
            .server()
            .enable_client(&p, &client_id(&cid)?)
            .await
            .map_err(admin_failure)?;
        Ok(client_view(&client))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `DELETE /admin/projects/{id}/clients/{client_id}`: deletes the client
/// and revokes its grants: `{"client_id", "grants_revoked"}`.
pub(super) async fn admin_delete_client(
    State(app): State<App>,
    Path((id, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let cid = client_id(&cid)?;
        let n = app
            .endpoints
            .server()
            .delete_client(&p, &cid)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({"client_id": cid.as_str(), "grants_revoked": n}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `GET /admin/projects/{id}/users/{subject}/grants?limit=&after=`: one
/// page of the user's grants: `{"grants": [...], "next": cursor or null}`.
pub(super) async fn admin_user_grants(
    State(app): State<App>,
    Path((id, sub)): Path<(String, String)>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let page = page_request(&uri)?;
        let page = app
            .endpoints
            .server()
            .user_grants(&p, &subject(&sub)?, &page)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({
            "grants": page.items.iter().map(grant_view).collect::<Vec<_>>(),
            "next": page.next.map(|c| c.to_string()),
        }))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `DELETE /admin/projects/{id}/users/{subject}/grants/{grant_id}`.
pub(super) async fn admin_revoke_user_grant(
    State(app): State<App>,
    Path((id, sub, grant)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let grant = GrantId::new(grant).map_err(|_| not_found("unknown grant"))?;
        let summary = app
            .endpoints
            .server()
            .revoke_user_grant(&p, &subject(&sub)?, &grant)
            .await
            .map_err(admin_failure)?;
        Ok(grant_view(&summary))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}

/// `DELETE /admin/projects/{id}/users/{subject}/grants`: revokes every
/// grant of the user (account deletion): `{"subject", "grants_revoked"}`.
pub(super) async fn admin_revoke_user_grants(
    State(app): State<App>,
    Path((id, sub)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        app.check_admin(&headers)?;
        let p = project_id(&id)?;
        let sub = subject(&sub)?;
        let n = app
            .endpoints
            .server()
            .revoke_user_grants(&p, &sub)
            .await
            .map_err(admin_failure)?;
        Ok(serde_json::json!({"subject": sub.as_str(), "grants_revoked": n}))
    }
    .await;
    result.map_or_else(|e| admin_error(&e), |v| json_ok(&v))
}
