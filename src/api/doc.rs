//! The OpenAPI description at `/openapi.json`, generated from the handlers' annotations and
//! the types of their bodies ([`super::shapes`]), so a change to a body changes the
//! description with it.

use std::sync::LazyLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "crm-import API",
        version = "1",
        description = "Push premises, accounts and clients of a housing-management company into the CRM; manage and run pipelines; read run history. Every /api/v1 request carries Authorization: Bearer TOKEN; a token belongs to one organization and never reaches another's data (404)."
    ),
    paths(
        super::healthz,
        super::render_metrics,
        super::openapi_json,
        super::push_clients,
        super::read_clients,
        super::push_premises,
        super::push::import_xml,
        super::read_premise,
        super::list_pipelines,
        super::pipelines::create,
        super::pipelines::read,
        super::pipelines::update,
        super::pipelines::delete,
        super::run_pipeline,
        super::pipelines::check,
        super::list_runs,
        super::show_run,
        super::download_results,
        super::login,
        super::who_am_i,
    ),
    modifiers(&BearerToken)
)]
struct ApiDoc;

/// The bearer-token scheme every `/api/v1` operation names.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The description as served.
pub static OPENAPI: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default());

#[cfg(test)]
mod tests {
    use super::*;

    /// The bodies the handlers answer with are described by their types, down to the report.
    #[test]
    fn the_description_carries_the_bodies_schemas() {
        let doc: serde_json::Value = serde_json::from_str(&OPENAPI).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "PushResult",
            "PushOutcome",
            "ClientsPush",
            "ClientRecord",
            "PremisesPush",
            "PipelineBody",
            "PipelineAnswer",
            "CheckAnswer",
            "RunAnswer",
            "RunRow",
            "RunReport",
            "ExportLine",
            "ErrorBody",
            "Code",
            "RunStatus",
        ] {
            assert!(schemas.contains_key(name), "{name} is not described");
        }
        let push = &doc["paths"]["/api/v1/clients"]["post"];
        assert_eq!(
            push["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/PushResult"
        );
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
