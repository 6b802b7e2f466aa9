//! Turning a delivery job into a message: the campaign's content, the user's template in
//! their locale rendered with their traits, features and scores, tracking links, and the
//! compliance gate. A message that fails any step is never sent; the step and the reason are
//! recorded instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use whisperer_channels::{Channel, Message, MessageKind, Recipient};
use whisperer_compliance::{ComplianceRules, OutgoingMessage, Violation};
use whisperer_core::{Millis, PersonId, WorkspaceId};
use whisperer_decide::campaign::CampaignSpec;
use whisperer_decide::record::DeliveryJob;
use whisperer_decide::service::ChurnScorer;
use whisperer_profiles::ProfileEngine;
use whisperer_store::{DefinitionKind, MessageRecord, Store, StoreError};
use whisperer_templates::{Decision as DecisionVars, RenderContext, Scores};

use crate::template::{CompiledTemplate, TemplateDefinition};
use crate::tracking::{Claims, Links, TrackingKey};

/// How long a compiled template or campaign is reused before the store is asked again.
const CACHE_FOR: Duration = Duration::from_secs(2);

/// Why a job did not become a message. `code` is stable.
#[derive(Clone, Debug, PartialEq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ComposeError {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// A store failure is worth retrying; everything else is final.
    #[serde(skip)]
    pub retryable: bool,
}

impl ComposeError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        ComposeError { code, message: message.into(), violations: Vec::new(), retryable: false }
    }
}

impl From<StoreError> for ComposeError {
    fn from(e: StoreError) -> Self {
        ComposeError { code: "store", message: e.to_string(), violations: Vec::new(), retryable: true }
    }
}

/// What composing needs of a workspace besides the job: its gate, its tracking.
pub struct WorkspaceContent<'a> {
    pub rules: &'a ComplianceRules,
    /// Public base URL and key of tracking links, when configured.
    pub tracking: Option<(&'a str, &'a TrackingKey)>,
    pub opens_and_clicks: bool,
    /// A preview: a user without an address for the channel is rendered anyway.
    pub preview: bool,
    /// The workspace's LLM, which writes the contents that have a brief.
    pub llm: Option<&'a whisperer_llm::Generator>,
    /// Translate a template through the LLM for a user whose language it lacks.
    pub translate_missing_locales: bool,
    /// The workspace's default locale: after the user's own language, before the template's.
    pub default_locale: Option<&'a str>,
}

impl<'a> WorkspaceContent<'a> {
    /// Rules only: no tracking, no LLM, no translation, the template's own default locale;
    /// callers set what they have with struct update syntax.
    pub fn new(rules: &'a ComplianceRules) -> Self {
        WorkspaceContent {
            rules,
            tracking: None,
            opens_and_clicks: true,
            preview: false,
            llm: None,
            translate_missing_locales: false,
            default_locale: None,
        }
    }
}

/// Which message a rendering is: its id (the idempotency key tracking links name), the person
/// it is for, and the decision that sent it.
#[derive(Clone, Copy, Debug)]
pub struct MessageAddress<'a> {
    pub id: &'a str,
    pub person: PersonId,
    pub decision_id: Option<&'a str>,
}

impl<'a> From<&'a MessageRecord> for MessageAddress<'a> {
    fn from(record: &'a MessageRecord) -> Self {
        MessageAddress { id: &record.id, person: record.person, decision_id: record.decision_id.as_deref() }
    }
}

/// A user as a message may speak of them.
#[derive(Clone, Debug, Default)]
pub struct UserData {
    pub user_id: Option<String>,
    pub traits: Map<String, Value>,
    pub features: Vec<(&'static str, f64)>,
    pub scores: Option<Scores>,
    pub time_zone: Option<String>,
    /// `context.locale` of the user's latest event, for users whose traits name no locale.
    pub context_locale: Option<String>,
}

impl UserData {
    /// The user's locale: traits `locale` or `language`, else their latest event's
    /// `context.locale` (normalised).
    pub fn locale(&self) -> Option<String> {
        let context = self.context_locale.as_ref().map(|l| {
            let mut m = Map::new();
            m.insert("locale".into(), Value::String(l.clone()));
            m
        });
        whisperer_templates::user_locale(&self.traits, context.as_ref())
    }
}

/// A workspace's template by id, as last read, and when (None: the store has no such template).
type TemplateCache = HashMap<(WorkspaceId, String), (Instant, Option<Arc<CompiledTemplate>>)>;

/// Renders jobs into messages.
pub struct Composer {
    store: Arc<dyn Store>,
    profiles: Option<ProfileEngine>,
    churn: Option<ChurnScorer>,
    templates: Mutex<TemplateCache>,
    campaigns: Mutex<HashMap<(WorkspaceId, String, i64), Arc<CampaignSpec>>>,
}

impl Composer {
    pub fn new(store: Arc<dyn Store>, profiles: Option<ProfileEngine>, churn: Option<ChurnScorer>) -> Self {
        Composer { store, profiles, churn, templates: Default::default(), campaigns: Default::default() }
    }

    /// A workspace's current template by id, compiled (cached briefly).
    pub async fn template(
        &self,
        ws: &WorkspaceId,
        id: &str,
    ) -> Result<Option<Arc<CompiledTemplate>>, ComposeError> {
        let key = (ws.clone(), id.to_owned());
        if let Some((at, t)) = lock(&self.templates).get(&key)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(t.clone());
        }
        let compiled = match self.store.definition(ws, DefinitionKind::Template, id, None).await? {
            Some(r) => Some(Arc::new(TemplateDefinition::parse(&r.definition).map_err(|e| {
                ComposeError::new(
                    "template_error",
                    format!("stored template {id:?} v{} no longer compiles: {e}", r.version),
                )
            })?)),
            None => None,
        };
        lock(&self.templates).insert(key, (Instant::now(), compiled.clone()));
        Ok(compiled)
    }

    async fn campaign(
        &self,
        ws: &WorkspaceId,
        id: &str,
        version: i64,
    ) -> Result<Arc<CampaignSpec>, ComposeError> {
        let key = (ws.clone(), id.to_owned(), version);
        if let Some(spec) = lock(&self.campaigns).get(&key) {
            return Ok(spec.clone());
        }
        let record = self.store.campaign(ws, id, Some(version)).await?.ok_or_else(|| {
            ComposeError::new("unknown_campaign", format!("campaign {id:?} v{version} is not stored"))
        })?;
        let spec = CampaignSpec::parse(&record.definition)
            .map_err(|e| ComposeError::new("unknown_campaign", format!("campaign {id:?} v{version}: {e}")))?;
        let spec = Arc::new(spec);
        lock(&self.campaigns).insert(key, spec.clone());
        Ok(spec)
    }

    /// What is known of a user now: ids, merged traits, live features and scores.
    pub async fn user(&self, ws: &WorkspaceId, person: PersonId) -> Result<Option<UserData>, ComposeError> {
        let Some(found) = self.store.person(ws, person).await? else { return Ok(None) };
        let traits = self.store.merged_traits(ws, person).await?;
        // Without a locale trait, what the user's device said last (Segment's `context.locale`).
        let context_locale = if whisperer_templates::user_locale(&traits, None).is_none() {
            self.store.person_events(ws, person, None, 1).await?.first().and_then(|e| {
                let raw: Value = serde_json::from_str(&e.event.raw).ok()?;
                raw.pointer("/context/locale").and_then(Value::as_str).map(str::to_owned)
            })
        } else {
            None
        };
        let now = Millis::now().0;
        let mut data = UserData { user_id: found.user_id, traits, context_locale, ..UserData::default() };
        if let Some(view) = self.profiles.as_ref().and_then(|p| p.view(ws, person, now)) {
            data.features = whisperer_decide::context::FEATURE_NAMES
                .iter()
                .filter_map(|&name| {
                    whisperer_decide::context::feature(&view.features, name).flatten().map(|v| (name, v))
                })
                .collect();
            let churn = self.churn.as_ref().and_then(|c| c(ws, person, now)).unwrap_or(0.0);
            data.scores =
                Some(Scores { engagement: view.engagement.score, churn, stage: view.stage.as_str().into() });
            data.time_zone = view.time_zone;
        }
        Ok(Some(data))
    }

    /// The message of a job, rendered, instrumented and through the gate.
    pub async fn compose(
        &self,
        ws: &WorkspaceId,
        content: &WorkspaceContent<'_>,
        record: &MessageRecord,
        job: &DeliveryJob,
    ) -> Result<Message, ComposeError> {
        let spec = self.campaign(ws, &job.campaign, job.campaign_version).await?;
        let content_id = job.content.as_deref().unwrap_or_default();
        let chosen = spec.actions.contents.iter().find(|c| c.id == content_id).ok_or_else(|| {
            ComposeError::new("no_content", format!("campaign has no content {content_id:?}"))
        })?;
        let user = self.user(ws, record.person).await?.ok_or_else(|| {
            ComposeError::new("no_recipient", "the user is not in the store (merged away or deleted)")
        })?;
        let decision = DecisionVars {
            id: job.decision_id.clone(),
            campaign: job.campaign.clone(),
            arm: job.arm.clone(),
            channel: Some(job.channel.as_str().into()),
            content: Some(whisperer_templates::Value::from(content_id)),
        };
        let campaign = Some(job.campaign.as_str());

        // A brief is written by the workspace's LLM; whatever goes wrong falls back to the
        // content's template, and the message records why.
        let mut fallback_reason = None;
        if let Some(brief) = &chosen.brief {
            match content.llm {
                None => fallback_reason = Some("no llm is configured for this workspace".to_owned()),
                Some(llm) => {
                    let locale = user
                        .locale()
                        .or_else(|| content.default_locale.map(str::to_owned))
                        .unwrap_or_else(|| "en".into());
                    match self.generate(ws, llm, &spec, brief, job.channel, &locale, content.rules).await {
                        Ok((template, record_note)) => {
                            let (mut message, violations) = self.render(
                                ws,
                                content,
                                record.into(),
                                job.channel,
                                &template,
                                &user,
                                decision.clone(),
                                campaign,
                            )?;
                            let wrong_language =
                                whisperer_templates::check_language(&message.text, &locale).err();
                            if violations.is_empty() && wrong_language.is_none() {
                                message.data.insert("content_source".into(), "llm".into());
                                message.data.insert("llm".into(), record_note);
                                return Ok(message);
                            }
                            fallback_reason = Some(match wrong_language {
                                Some(w) => format!("llm output is in the wrong language: {w}"),
                                None => format!(
                                    "llm output blocked by the gate: {}",
                                    whisperer_compliance::Violations(violations)
                                        .to_string()
                                        .replace('\n', "; ")
                                ),
                            });
                        }
                        Err(reason) => fallback_reason = Some(reason),
                    }
                }
            }
        }
        let Some(template_id) = &chosen.template else {
            return Err(ComposeError::new(
                "no_template",
                match fallback_reason {
                    Some(reason) => {
                        format!("content {content_id:?} has no template to fall back to: {reason}")
                    }
                    None => format!("content {content_id:?} has neither a template nor a brief"),
                },
            ));
        };
        let mut template = self.template(ws, template_id).await?.ok_or_else(|| {
            ComposeError::new("no_template", format!("no template {template_id:?} in this workspace"))
        })?;
        let mut translation = None;
        if content.translate_missing_locales
            && let Some(llm) = content.llm
            && let Some(wanted) = user.locale()
        {
            match self.translated(ws, llm, &template, &wanted).await {
                Ok(Some(translated)) => {
                    template = Arc::new(translated);
                    translation = Some(wanted);
                }
                Ok(None) => {}
                Err(reason) => {
                    let note = format!("kept the template's own language: {reason}");
                    fallback_reason = Some(fallback_reason.map_or(note.clone(), |r| format!("{r}; {note}")));
                }
            }
        }
        let (mut message, violations) =
            self.render(ws, content, record.into(), job.channel, &template, &user, decision, campaign)?;
        if let Some(locale) = translation {
            message.data.insert("translated_to".into(), locale);
        }
        if !violations.is_empty() {
            let message = whisperer_compliance::Violations(violations.clone()).to_string();
            return Err(ComposeError { code: "compliance", message, violations, retryable: false });
        }
        message.data.insert("content_source".into(), "template".into());
        if let Some(reason) = fallback_reason {
            message.data.insert("content_fallback".into(), reason);
        }
        Ok(message)
    }

    /// The template in the user's language when it has no locale of that language, translated
    /// by the LLM (placeholders kept, so it renders like the original); None when a locale of
    /// the user's language exists.
    async fn translated(
        &self,
        ws: &WorkspaceId,
        llm: &whisperer_llm::Generator,
        template: &CompiledTemplate,
        wanted: &str,
    ) -> Result<Option<CompiledTemplate>, String> {
        let language = |tag: &str| tag.split('-').next().unwrap_or_default().to_ascii_lowercase();
        let Some(used) = template.set.resolve_locale(wanted) else { return Ok(None) };
        if language(used) == language(wanted) {
            return Ok(None);
        }
        let (_, parts) = template
            .definition
            .locales
            .iter()
            .find(|(tag, _)| whisperer_templates::normalize_locale(tag) == used)
            .ok_or("the template's locales changed while rendering")?;
        let translate = |text: String| async move {
            if text.trim().is_empty() {
                return Ok(text);
            }
            let out = llm
                .translate(ws, &text, used, wanted)
                .await
                .map_err(|f| format!("translation failed: {}", f.error))?;
            Ok::<_, String>(out.output)
        };
        let subject = translate(parts.subject.clone()).await?;
        let body = translate(parts.body.clone()).await?;
        if let Err(wrong) = whisperer_templates::check_language(&body, wanted) {
            return Err(format!("the translation is in the wrong language: {wrong}"));
        }
        let html = match &parts.html {
            Some(h) => Some(translate(h.clone()).await?),
            None => None,
        };
        let definition = TemplateDefinition {
            kind: template.definition.kind,
            default_locale: wanted.to_owned(),
            locales: BTreeMap::from([(
                wanted.to_owned(),
                crate::template::LocaleParts { subject, body, html },
            )]),
        };
        definition.compile().map(Some).map_err(|e| format!("the translation is not a usable template: {e}"))
    }

    /// One variant for a brief, as a template (so `{{ unsubscribe_url }}` and any variable the
    /// model used are rendered, and an unknown variable is caught), with a note of the call.
    #[allow(clippy::too_many_arguments)]
    async fn generate(
        &self,
        ws: &WorkspaceId,
        llm: &whisperer_llm::Generator,
        spec: &CampaignSpec,
        brief: &str,
        channel: Channel,
        locale: &str,
        rules: &ComplianceRules,
    ) -> Result<(CompiledTemplate, String), String> {
        let marketing_email = channel == Channel::Email;
        let mut required = Vec::new();
        if marketing_email {
            required.push("{{ unsubscribe_url }}".to_owned());
            if let Some(address) = &rules.config().postal_address {
                required.push(address.clone());
            }
        }
        let request = whisperer_llm::Brief {
            goal: brief.to_owned(),
            audience: spec
                .audience
                .clone()
                .map(|a| format!("users matching: {a}"))
                .unwrap_or_else(|| "users of the product".into()),
            tone: "clear, warm and brief".into(),
            channel,
            max_length: None,
            locale: locale.to_owned(),
            required_elements: required,
        };
        let generation =
            llm.generate_variants(ws, &request, 1).await.map_err(|f| format!("llm failed: {}", f.error))?;
        let record = &generation.record;
        let note = format!(
            "{} {} tokens {}+{} cache_hit={} attempts={}",
            record.provider,
            record.model,
            record.input_tokens,
            record.output_tokens,
            record.cache_hit,
            record.attempts
        );
        let variant = generation.output.into_iter().next().ok_or("llm returned no variant")?;
        let definition = TemplateDefinition {
            kind: MessageKind::Marketing,
            default_locale: locale.to_owned(),
            locales: BTreeMap::from([(
                locale.to_owned(),
                crate::template::LocaleParts { subject: variant.subject, body: variant.body, html: None },
            )]),
        };
        let compiled =
            definition.compile().map_err(|e| format!("llm output is not a usable template: {e}"))?;
        Ok((compiled, note))
    }

    /// Renders a template for a user on a channel, with what the compliance gate found (empty
    /// when it passes): what [`compose`](Self::compose) and the preview share.
    #[allow(clippy::too_many_arguments)]
    pub fn render(
        &self,
        ws: &WorkspaceId,
        content: &WorkspaceContent<'_>,
        address: MessageAddress<'_>,
        channel: Channel,
        template: &CompiledTemplate,
        user: &UserData,
        decision: DecisionVars,
        campaign: Option<&str>,
    ) -> Result<(Message, Vec<Violation>), ComposeError> {
        let kind = template.definition.kind;
        let recipient = match recipient(channel, &user.traits) {
            Ok(r) => r,
            Err(_) if content.preview => Recipient::Person,
            Err(e) => return Err(e),
        };
        let links = content.tracking.map(|(base_url, key)| Links {
            base_url,
            key,
            claims: Claims {
                w: ws.as_str().into(),
                m: address.id.to_owned(),
                u: user.user_id.clone(),
                c: channel.as_str().into(),
                d: address.decision_id.map(str::to_owned),
                k: campaign.map(str::to_owned),
                l: None,
            },
        });
        let unsubscribe_url = links.as_ref().map(|l| l.unsubscribe());
        let mut ctx = RenderContext::new()
            .traits(user.traits.clone())
            .features(user.features.iter().copied())
            .decision(decision)
            .var("unsubscribe_url", unsubscribe_url.clone().unwrap_or_default());
        if let Some(scores) = &user.scores {
            ctx = ctx.scores(scores.clone());
        }
        if let Some(l) = &links {
            ctx = ctx.var("open_pixel_url", l.open_pixel());
        }
        let locale = chosen_locale(&template.set, user.locale(), content.default_locale);
        let rendered = template
            .set
            .render_context(&locale, &ctx)
            .map_err(|e| ComposeError::new("render_error", e.to_string()))?;
        let mut html = rendered.html;
        if channel == Channel::Email
            && content.opens_and_clicks
            && let (Some(l), Some(h)) = (&links, &html)
        {
            html = Some(l.instrument_html(h, unsubscribe_url.as_deref().unwrap_or_default()));
        }
        let subject = Some(rendered.subject).filter(|s| !s.is_empty());
        let mut headers = Vec::new();
        if channel == Channel::Email
            && kind == MessageKind::Marketing
            && let Some(url) = &unsubscribe_url
        {
            headers.push(("List-Unsubscribe".to_owned(), format!("<{url}>")));
            headers.push(("List-Unsubscribe-Post".to_owned(), "List-Unsubscribe=One-Click".to_owned()));
        }
        let (email, phone) = (trait_str(&user.traits, "email"), trait_str(&user.traits, "phone"));
        let name = trait_str(&user.traits, "name");
        let outgoing = OutgoingMessage {
            channel,
            kind,
            subject: subject.as_deref(),
            body: &rendered.body,
            html: html.as_deref(),
            recipient: whisperer_compliance::Recipient { email, phone, name },
            others: &[],
            unsubscribe_url: unsubscribe_url.as_deref(),
        };
        let violations =
            whisperer_compliance::check(content.rules, &outgoing).err().map(|v| v.0).unwrap_or_default();
        let mut data = BTreeMap::new();
        if let Some(d) = address.decision_id {
            data.insert("decision_id".to_owned(), d.to_owned());
        }
        if let Some(c) = campaign {
            data.insert("campaign".to_owned(), c.to_owned());
        }
        data.insert("locale".to_owned(), rendered.locale_used);
        let message = Message {
            id: address.id.to_owned(),
            workspace: ws.as_str().into(),
            person: address.person.to_string(),
            user_id: user.user_id.clone(),
            channel,
            kind,
            recipient,
            subject,
            text: rendered.body,
            html,
            headers,
            data,
        };
        Ok((message, violations))
    }
}

/// The locale to render: the user's when the template has their language, else the workspace's
/// default when the template has that, else the template's own fallback chain (which ends at
/// the template's default locale).
fn chosen_locale(
    set: &whisperer_templates::TemplateSet,
    user: Option<String>,
    workspace: Option<&str>,
) -> String {
    let language = |tag: &str| tag.split('-').next().unwrap_or_default().to_ascii_lowercase();
    let has_language =
        |tag: &str| set.resolve_locale(tag).is_some_and(|found| language(found) == language(tag));
    match (user, workspace) {
        (Some(u), _) if has_language(&u) => u,
        (_, Some(w)) if has_language(w) => w.to_owned(),
        (Some(u), _) => u,
        (None, _) => set.default_locale().to_owned(),
    }
}

fn trait_str<'a>(traits: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    traits.get(name).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// Where a channel's message goes for this user, from their traits: `email`, `phone`,
/// `push_token` (FCM) or `web_push` (a browser subscription: endpoint and keys).
fn recipient(channel: Channel, traits: &Map<String, Value>) -> Result<Recipient, ComposeError> {
    let missing = |what: &str| ComposeError::new("no_recipient", format!("the user has no {what} trait"));
    Ok(match channel {
        Channel::Email => Recipient::Email {
            address: trait_str(traits, "email").ok_or_else(|| missing("email"))?.to_owned(),
            name: trait_str(traits, "name").map(str::to_owned),
        },
        Channel::Sms => Recipient::Phone {
            number: trait_str(traits, "phone").ok_or_else(|| missing("phone"))?.to_owned(),
        },
        Channel::Push => {
            if let Some(token) = trait_str(traits, "push_token") {
                Recipient::PushToken { token: token.to_owned() }
            } else {
                let sub = traits
                    .get("web_push")
                    .and_then(Value::as_object)
                    .ok_or_else(|| missing("push_token or web_push"))?;
                let field = |k: &str| sub.get(k).and_then(Value::as_str).map(str::to_owned);
                let keys = sub.get("keys").and_then(Value::as_object);
                let key = |k: &str| {
                    field(k)
                        .or_else(|| keys.and_then(|m| m.get(k)).and_then(Value::as_str).map(str::to_owned))
                };
                match (field("endpoint"), key("p256dh"), key("auth")) {
                    (Some(endpoint), Some(p256dh), Some(auth)) => {
                        Recipient::WebPush { endpoint, p256dh, auth }
                    }
                    _ => return Err(missing("complete web_push subscription (endpoint, p256dh, auth)")),
                }
            }
        }
        Channel::InApp | Channel::Webhook => Recipient::Person,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
