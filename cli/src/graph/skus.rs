//! What a SKU entitles (D4), read from its service plans: the ones a
//! subscribedSkus export lists, or else those of Microsoft's published list
//! of product names and service plan identifiers (`cli/data/`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use domain::events::SkuKind;
use uuid::Uuid;

/// Microsoft's "Product names and service plan identifiers for licensing"
/// CSV; `cli/data/README.md` says where and of when.
const PUBLISHED: &str = include_str!("../../data/licensing-service-plans.csv");

/// The published list, by part number (upper case) and by skuId.
#[derive(Default)]
struct List {
    /// Part number to its service plans, in the list's order.
    plans: BTreeMap<String, Vec<String>>,
    /// skuId to part number.
    parts: BTreeMap<Uuid, String>,
    /// Service plan name (upper case) to its friendly name.
    friendly: BTreeMap<String, String>,
}

/// The list, read once, when an import first needs it.
fn list() -> &'static List {
    static LIST: OnceLock<List> = OnceLock::new();
    LIST.get_or_init(|| {
        let mut list = List::default();
        let mut reader = csv::Reader::from_reader(PUBLISHED.as_bytes());
        // Columns: Product_Display_Name, String_Id, GUID, Service_Plan_Name, Service_Plan_Id, friendly name.
        for row in reader.records().flatten() {
            let (Some(part), Some(id), Some(plan)) = (row.get(1), row.get(2), row.get(3)) else { continue };
            let part = part.trim().to_uppercase();
            if let Ok(id) = Uuid::parse_str(id.trim()) {
                list.parts.insert(id, part.clone());
            }
            let friendly = row.get(5).unwrap_or("").trim().to_owned();
            list.friendly.entry(plan.trim().to_uppercase()).or_insert(friendly);
            list.plans.entry(part).or_default().push(plan.trim().to_owned());
        }
        list
    })
}

/// What one service plan entitles in Dataverse, if anything. Microsoft 365
/// suites carry free Power Apps and Dataverse plans (`*_O365_*`): those are
/// `m365-dataverse`, never a paid kind. `DYN365_CDS_*` plans only carry the
/// database that Power Apps, Power Automate or Project plans use: the app
/// plan beside them decides.
fn plan_kind(plan: &str) -> Option<SkuKind> {
    let plan = plan.trim().to_uppercase();
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| plan.starts_with(p));
    if plan.contains("_O365_") {
        return (plan.contains("POWERAPPS") || plan.contains("CDS")).then_some(SkuKind::M365Dataverse);
    }
    if starts(&["DYN365_MARKETING_", "DYN365_BUSINESS_MARKETING"]) {
        return Some(SkuKind::MarketingTenant);
    }
    if starts(&["DYN365_CDS_"]) {
        return None;
    }
    if starts(&["DYN365_", "D365_", "DYNAMICS_365_", "CRM", "POWERAPPS_DYN_"]) {
        return Some(SkuKind::D365);
    }
    if starts(&["POWERAPPS_"]) && !starts(&["POWERAPPS_PORTALS_"]) {
        return Some(SkuKind::PowerApps);
    }
    None
}

/// How strong a kind a plan gives is, the strongest first: a paid user
/// license, then the tenant's Marketing app, then a free plan.
fn rank(kind: SkuKind) -> u8 {
    match kind {
        SkuKind::D365 => 0,
        SkuKind::MarketingTenant => 1,
        SkuKind::PowerApps => 2,
        SkuKind::M365Dataverse => 3,
        SkuKind::Office => 4,
    }
}

/// A SKU's kind and why: `--sku-kind` first; else its strongest service
/// plan, from the export's `servicePlans` or else the published list (by
/// part number, then skuId); else `office`.
pub fn classify(
    part: &str,
    id: Option<Uuid>,
    exported: &[String],
    overrides: &BTreeMap<String, SkuKind>,
) -> (SkuKind, String) {
    if let Some(kind) = overrides.get(&part.trim().to_uppercase()) {
        return (*kind, format!("--sku-kind {}={}", part.trim(), kind.cli_name()));
    }
    let list = list();
    let published = list.plans.get(&part.trim().to_uppercase()).or_else(|| {
        let known = id.and_then(|id| list.parts.get(&id));
        known.and_then(|part| list.plans.get(part))
    });
    let (plans, source) = match published {
        _ if !exported.is_empty() => (exported, "the export's servicePlans"),
        Some(plans) => (&plans[..], "Microsoft's published list"),
        None => {
            return (SkuKind::Office, "not in Microsoft's published list, and no servicePlans given".into())
        }
    };
    let strongest = plans.iter().filter_map(|p| Some((plan_kind(p)?, p))).min_by_key(|(kind, _)| rank(*kind));
    match strongest {
        Some((kind, plan)) => {
            let friendly = list.friendly.get(&plan.trim().to_uppercase()).filter(|f| !f.is_empty());
            let friendly = friendly.map(|f| format!(" ({f})")).unwrap_or_default();
            (kind, format!("service plan {}{friendly}, in {source}", plan.trim()))
        }
        None => (
            SkuKind::Office,
            format!("no Dynamics 365, Power Apps or Dataverse plan among its {} in {source}", plans.len()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(part: &str) -> (SkuKind, String) {
        classify(part, None, &[], &BTreeMap::new())
    }

    #[test]
    fn sku_kinds_come_from_the_published_list_crmstandard_is_d365() {
        let (k, why) = kind("CRMSTANDARD");
        assert_eq!(k, SkuKind::D365, "{why}");
        assert!(why.contains("service plan CRMSTANDARD") && why.contains("published list"), "{why}");
        // By skuId too, whatever part number the export gives it.
        let crm = Uuid::parse_str("d17b27af-3f49-4822-99f9-56a661538792").unwrap();
        assert_eq!(classify("crm-pro", Some(crm), &[], &BTreeMap::new()).0, SkuKind::D365);
        assert!(list().plans.len() > 400, "the whole list is shipped: {}", list().plans.len());
        assert!(csv::Reader::from_reader(PUBLISHED.as_bytes())
            .records()
            .all(|r| r.is_ok_and(|r| r.len() == 6)));
    }

    #[test]
    fn o365_free_plans_make_m365_dataverse_never_paid() {
        for free in ["POWERAPPS_O365_P3", "DYN365_CDS_O365_P3", "CDS_O365_P2", "POWERAPPS_O365_S1"] {
            assert_eq!(plan_kind(free), Some(SkuKind::M365Dataverse), "{free}");
        }
        for suite in ["ENTERPRISEPREMIUM", "ENTERPRISEPACK", "SPE_E5", "SPB", "STANDARDPACK"] {
            let (k, why) = kind(suite);
            assert_eq!(k, SkuKind::M365Dataverse, "{suite}: {why}");
        }
        let plans = ["EXCHANGE_S_ENTERPRISE".to_owned(), "POWERAPPS_O365_P3".to_owned()];
        let (k, why) = classify("SOME_SUITE", None, &plans, &BTreeMap::new());
        assert_eq!(k, SkuKind::M365Dataverse);
        assert!(
            why.starts_with("service plan POWERAPPS_O365_P3 (")
                && why.ends_with("in the export's servicePlans"),
            "{why}"
        );
    }

    #[test]
    fn dynamics_and_paid_power_apps_plans_are_paid_and_the_strongest_plan_wins() {
        let plans = ["POWERAPPS_O365_P3".to_owned(), "DYN365_ENTERPRISE_SALES".to_owned()];
        assert_eq!(classify("X", None, &plans, &BTreeMap::new()).0, SkuKind::D365);
        assert_eq!(kind("POWERAPPS_PER_USER").0, SkuKind::PowerApps);
        assert_eq!(kind("DYN365_ENTERPRISE_PLAN1").0, SkuKind::D365);
        // Business Central's invoicing plan, carried by Microsoft 365 suites, is no Dynamics 365 CE plan.
        assert_eq!(plan_kind("DYN365BC_MS_INVOICING"), None);
        // A carrier of the database alone decides nothing: Project Plan 3 is office.
        assert_eq!(kind("PROJECTPROFESSIONAL").0, SkuKind::Office);
        for office in ["EXCHANGESTANDARD", "POWER_BI_PRO", "OFFICESUBSCRIPTION", "O365_BUSINESS"] {
            assert_eq!(kind(office).0, SkuKind::Office, "{office}");
        }
    }

    #[test]
    fn a_sku_the_list_lacks_is_office_and_an_override_wins() {
        assert_eq!(kind("DYN365_MARKETING_APP_ATTACH").0, SkuKind::MarketingTenant);
        let (k, why) = kind("SOMETHING_NEW");
        assert_eq!(
            (k, why.as_str()),
            (SkuKind::Office, "not in Microsoft's published list, and no servicePlans given")
        );
        let overrides = [("CRMSTANDARD".to_owned(), SkuKind::Office)].into_iter().collect();
        assert_eq!(
            classify("crmstandard", None, &[], &overrides),
            (SkuKind::Office, "--sku-kind crmstandard=office".into())
        );
    }
}
