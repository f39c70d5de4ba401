//! `template.yaml` is the deployable truth: every route the code serves is routed there, and
//! every environment variable a function reads is set there.

const TEMPLATE: &str = include_str!("../../../template.yaml");

/// (method, path) pairs of the template's HttpApi events: a `Method:` line followed by `Path:`.
fn template_routes() -> Vec<(String, String)> {
    let lines: Vec<&str> = TEMPLATE.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let method = w[0].strip_prefix("Method: ")?;
            let path = w[1].strip_prefix("Path: ")?;
            Some((method.to_string(), path.to_string()))
        })
        .collect()
}

#[test]
fn every_served_route_is_deployed_and_nothing_else() {
    let mut deployed = template_routes();
    let mut served: Vec<(String, String)> = docs::every_route()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    deployed.sort();
    served.sort();
    assert_eq!(deployed, served);
}

#[test]
fn every_configuration_variable_is_set() {
    for var in [
        "TABLE_NAME",
        "KMS_KEY_ID",
        "PLATFORM_SECRETS",
        "SIGNING_SECRETS",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "NOTIFICATIONS_QUEUE_URL",
        "APP_URL",
        "SESSION_CACHE_SECONDS",
        "EVENT_BUS_NAME",
        "NOTIFICATIONS_SENDER",
        "NOTIFICATIONS_QUEUE_URLS",
        "PUSH_PLATFORM_APPLICATIONS",
        "SES_CONFIGURATION_SET",
        "NOTIFICATIONS_FEEDBACK_QUEUE_URL",
        "WORK_QUEUE_URL",
        "AUDIT_TABLE_NAME",
        "AUDIT_SIGNING_KEY_ID",
        "EVENTS_RELAY_DLQ_URL",
    ] {
        assert!(
            TEMPLATE.contains(&format!("{var}:")),
            "{var} is not set in template.yaml"
        );
    }
}

#[test]
fn notification_jobs_get_three_attempts_as_the_worker_counts_them() {
    let attempts = notifications::rules::MAX_ATTEMPTS;
    assert_eq!(attempts, shared::provision::NOTIFICATION_RECEIVES);
    for queue in [
        "NotificationsCriticalQueue",
        "NotificationsHighQueue",
        "NotificationsNormalQueue",
        "NotificationsLowQueue",
    ] {
        let (_, block) = resources()
            .into_iter()
            .find(|(name, _)| name == queue)
            .unwrap_or_else(|| panic!("{queue} is in the template"));
        assert!(
            block.contains(&format!("maxReceiveCount: {attempts}")),
            "{queue} moves a job to its dead-letter queue after {attempts} receives"
        );
    }
}

#[test]
fn every_event_the_notifications_catalogue_names_is_routed_to_it() {
    let (_, rule) = resources()
        .into_iter()
        .find(|(name, _)| name == "NotificationsEventsRule")
        .expect("the rule is in the template");
    let (sources, types) = shared::provision::NOTIFICATIONS_EVENT_PATTERN;
    for source in sources {
        assert!(rule.contains(&format!("- {source}")), "{source} is routed");
    }
    for r in notifications::events::RULES {
        assert!(
            rule.contains(&format!("- {}", r.event)),
            "{} is routed",
            r.event
        );
        assert!(types.contains(&r.event), "{} is routed locally", r.event);
    }
    // And the jobs API calls asked for, queued again from their events.
    let requested = shared::contracts::NOTIFICATION_REQUESTED;
    assert!(
        rule.contains(&format!("- {requested}")),
        "{requested} is routed"
    );
    assert!(types.contains(&requested), "{requested} is routed locally");
    assert_eq!(types.len(), notifications::events::RULES.len() + 1);
}

#[test]
fn ses_reports_bounces_and_complaints_of_the_workers_mail_to_its_feedback_queue() {
    let block = |name: &str| {
        resources()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("{name} is in the template"))
    };
    let destination = block("NotificationsFeedbackDestination");
    for part in [
        "ConfigurationSetName: !Ref NotificationsConfigurationSet",
        "- bounce",
        "- complaint",
        "TopicARN: !Ref NotificationsFeedbackTopic",
    ] {
        assert!(destination.contains(part), "the destination has {part}");
    }
    let subscription = block("NotificationsFeedbackSubscription");
    assert!(subscription.contains("Endpoint: !GetAtt NotificationsFeedbackQueue.Arn"));
    assert!(subscription.contains("RawMessageDelivery: true"));
    let worker = block("NotificationsWorkerFunction");
    assert!(worker.contains("SES_CONFIGURATION_SET: !Ref NotificationsConfigurationSet"));
    assert!(worker.contains("Queue: !GetAtt NotificationsFeedbackQueue.Arn"));
}

/// Each top-level resource of the template with its block of lines.
fn resources() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_resources = false;
    for line in TEMPLATE.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_resources = line.starts_with("Resources:");
            continue;
        }
        if !in_resources {
            continue;
        }
        let top = line
            .strip_prefix("  ")
            .filter(|l| !l.starts_with(' ') && !l.starts_with('#'));
        match top.and_then(|l| l.strip_suffix(':')) {
            Some(name) => out.push((name.to_string(), String::new())),
            None => {
                if let Some((_, block)) = out.last_mut() {
                    block.push_str(line);
                    block.push('\n');
                }
            }
        }
    }
    out
}

#[test]
fn only_the_relay_may_put_events_on_the_bus() {
    let touching: Vec<String> = resources()
        .into_iter()
        .filter(|(_, block)| block.contains("events:PutEvents"))
        .map(|(name, _)| name)
        .collect();
    // The relay's role is the only one allowed to publish, and the bus denies everyone else.
    assert_eq!(
        touching,
        ["EventBusOnlyRelayPublishes", "EventsRelayFunctionRole"]
    );
    let bus = resources()
        .into_iter()
        .find(|(name, _)| name == "EventBusOnlyRelayPublishes")
        .map(|(_, block)| block)
        .unwrap_or_default();
    assert!(bus.contains("Effect: Deny"), "{bus}");
    assert!(
        bus.contains("aws:PrincipalArn: !GetAtt EventsRelayFunctionRole.Arn"),
        "{bus}"
    );
}

#[test]
fn only_the_auth_function_can_open_the_signing_key() {
    let resources = resources();
    // Exactly one role may decrypt under the signing document's context, and exactly one
    // function receives it.
    let signers: Vec<&str> = resources
        .iter()
        .filter(|(_, b)| b.contains("kms:EncryptionContext:purpose: token-signing"))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(signers, ["AuthFunctionRole"]);
    let holders: Vec<&str> = resources
        .iter()
        .filter(|(_, b)| b.contains("SIGNING_SECRETS:"))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(holders, ["AuthFunction"]);
    // Every role that may use the key at all is bound to one purpose.
    for (name, block) in &resources {
        if block.contains("Sid: PhiEnvelopeKeys") {
            assert!(
                block.contains("kms:EncryptionContext:purpose:"),
                "{name} may open either secrets document"
            );
        }
    }
}

#[test]
fn every_function_that_authenticates_callers_may_batch_read_the_session_and_user() {
    // The caller check reads the session and the user in one BatchGetItem, an IAM action of
    // its own: without it every authenticated request would fail on AWS.
    let resources = resources();
    for role in [
        "AuthFunctionRole",
        "UsersFunctionRole",
        "ClinicsFunctionRole",
        "AppointmentsFunctionRole",
        "BillingFunctionRole",
    ] {
        let block = &resources.iter().find(|(n, _)| n == role).unwrap().1;
        assert!(block.contains("dynamodb:BatchGetItem"), "{role}");
    }
    // Queue consumers need no more than the event source mapping uses; only the notification
    // worker sets its own retry delays.
    let postponers: Vec<&str> = resources
        .iter()
        .filter(|(_, b)| b.contains("sqs:ChangeMessageVisibility"))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(postponers, ["NotificationsWorkerFunctionRole"]);
}

/// The `- dynamodb:...` actions of each statement (split at `- Sid:`) of `block` that names
/// `resource`.
fn statements_on<'a>(block: &'a str, resource: &str) -> Vec<Vec<&'a str>> {
    block
        .split("- Sid:")
        .skip(1)
        .filter(|st| st.contains(resource))
        .map(|st| {
            st.lines()
                .filter_map(|l| l.trim().strip_prefix("- dynamodb:"))
                .collect()
        })
        .collect()
}

/// Every Rust source file under `dir` (relative to the workspace), concatenated.
fn sources(dir: &str) -> String {
    fn walk(p: &std::path::Path, out: &mut String) {
        for e in std::fs::read_dir(p).expect("sources").flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&path).expect("source"));
            }
        }
    }
    let mut out = String::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    walk(&root.join(dir), &mut out);
    out
}

#[test]
fn every_function_that_writes_audit_records_may_append_them() {
    let all = resources();
    let mut writers = 0;
    // Each HTTP function's code, and the role it runs under.
    for (dir, role) in [
        ("functions/auth", "AuthFunctionRole"),
        ("functions/users", "UsersFunctionRole"),
        ("functions/clinics", "ClinicsFunctionRole"),
        ("functions/appointments", "AppointmentsFunctionRole"),
        ("functions/billing", "BillingFunctionRole"),
        ("functions/notifications", "NotificationsApiFunctionRole"),
        ("functions/ehr", "EhrFunctionRole"),
    ] {
        let code = sources(dir);
        // Calls spread over lines (`state\n .audit\n .record(`) read as one.
        let flat: String = code.split_whitespace().collect();
        let writes = flat.contains("audit.record(") || flat.contains("audit.put(");
        let (_, block) = all.iter().find(|(n, _)| n == role).expect("role");
        let may = statements_on(block, "AuditTable")
            .iter()
            .any(|actions| actions.contains(&"PutItem"));
        if writes {
            writers += 1;
            assert!(
                may,
                "{role} runs {dir}, which writes audit records, but may not"
            );
        }
    }
    assert!(
        writers >= 6,
        "only {writers} functions found writing audit records"
    );
}

#[test]
fn no_function_role_may_change_or_remove_an_audit_record() {
    let all = resources();
    let (_, deny) = all
        .iter()
        .find(|(n, _)| n == "AuditTrailAppendOnly")
        .expect("the append-only policy");
    assert!(deny.contains("Effect: Deny"));
    for action in ["UpdateItem", "DeleteItem", "BatchWriteItem", "DeleteTable"] {
        assert!(
            deny.contains(&format!("- dynamodb:{action}")),
            "{action} is denied"
        );
    }
    let roles: Vec<&String> = all
        .iter()
        .filter(|(_, b)| b.contains("Type: AWS::IAM::Role"))
        .map(|(n, _)| n)
        .collect();
    assert!(roles.len() >= 16, "{roles:?}");
    for role in roles {
        // Every role carries the deny ...
        assert!(
            deny.contains(&format!("- !Ref {role}\n")),
            "{role} is not under AuditTrailAppendOnly"
        );
        // ... and none allows more than adding and reading records.
        let (_, block) = all.iter().find(|(n, _)| n == role).expect("role");
        for actions in statements_on(block, "AuditTable") {
            for a in actions {
                assert!(
                    ["PutItem", "Query", "DescribeTable"].contains(&a),
                    "{role} allows dynamodb:{a} on the audit table"
                );
            }
        }
    }
    // The table itself keeps records for good and can be restored.
    let (_, table) = all
        .iter()
        .find(|(n, _)| n == "AuditTable")
        .expect("audit table");
    assert!(!table.contains("TimeToLiveSpecification"));
    assert!(table.contains("PointInTimeRecoveryEnabled: true"));
    assert!(table.contains("DeletionProtectionEnabled: true"));
}
