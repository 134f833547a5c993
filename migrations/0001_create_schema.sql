-- One schema for the four seed products (docs/schema.md explains each merge; docs/seed-mapping.csv maps
-- every seed column to its home here). UUID keys except messages and per-request usage rows; money is
-- NUMERIC; time is timestamptz; updated_at is kept current by a trigger.

CREATE FUNCTION confab_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- Identity ---------------------------------------------------------------------------------------------

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username      text NOT NULL,
    email         text NOT NULL,
    -- NULL for accounts that cannot sign in with a password (model participants, imported users).
    password_hash text,
    name          text,
    organization  text,
    aws_region    text,
    country       text,
    profession    text,
    avatar_url    text,
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('super_admin', 'admin', 'user')),
    is_active     boolean NOT NULL DEFAULT true,
    -- An account that stands for a model in conversations (participant role 'ai').
    is_ai         boolean NOT NULL DEFAULT false,
    -- Bumped by a password change, logout everywhere, role change or deactivation: older JWTs stop working.
    token_version integer NOT NULL DEFAULT 0,
    last_login    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_length CHECK (char_length(username) BETWEEN 1 AND 255),
    CONSTRAINT users_email_length CHECK (char_length(email) BETWEEN 3 AND 255)
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE INDEX users_created_at_idx ON users (created_at);

CREATE TABLE user_properties (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    tone            text,
    additional_info text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text NOT NULL DEFAULT 'default',
    -- The first characters of the key, shown in lists and used to find the row; the rest is only hashed.
    prefix     text NOT NULL UNIQUE,
    key_hash   text NOT NULL UNIQUE,
    expires_at timestamptz,
    last_used  timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id, created_at DESC);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Every token issued by rotation from one login shares a family; reuse of a spent token revokes it.
    family_id   uuid NOT NULL,
    parent_id   uuid REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    token_hash  text NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_ip  text,
    user_agent  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);

CREATE TABLE connection_logs (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- SET NULL: the security trail outlives the account; failed logins for unknown names have no user.
    user_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    ip_address text,
    action     text NOT NULL CHECK (action IN (
        'signup', 'login', 'login_failed', 'refresh', 'refresh_reuse_detected', 'logout', 'logout_all',
        'password_changed', 'api_key_created', 'api_key_revoked', 'role_changed', 'deactivated', 'reactivated'
    )),
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connection_logs_user_idx ON connection_logs (user_id, action, created_at DESC);
CREATE INDEX connection_logs_ip_idx ON connection_logs (ip_address, action, created_at DESC);
CREATE INDEX connection_logs_created_idx ON connection_logs (created_at, id);

CREATE TABLE licenses (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The key is shown once; only its prefix (for support) and hash are kept.
    key_prefix text NOT NULL,
    key_hash   text NOT NULL UNIQUE,
    tier       text NOT NULL,
    seats      integer NOT NULL CHECK (seats > 0),
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX licenses_owner_idx ON licenses (owner_id);

CREATE TABLE license_seats (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    license_id uuid NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (license_id, user_id)
);
CREATE INDEX license_seats_user_idx ON license_seats (user_id);

-- Conversations ----------------------------------------------------------------------------------------

CREATE TABLE conversations (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- direct: 1:1; group: titled group; room: seed 001's rooms; assistant: one user's chat with models
    -- (seed 000 conversations, seed 002 chats); anonymous: no owner, reached by a token, cleaned after retention.
    kind                 text NOT NULL DEFAULT 'direct'
                         CHECK (kind IN ('direct', 'group', 'room', 'assistant', 'anonymous')),
    is_group             boolean GENERATED ALWAYS AS (kind IN ('group', 'room')) STORED,
    title                text,
    -- The owning account: deleting it deletes the conversation (seed 002 chats, seed 000, seed 001 rooms).
    -- Shared direct and group conversations have no owner and survive their creator (seed 003).
    user_id              uuid REFERENCES users (id) ON DELETE CASCADE,
    created_by           uuid REFERENCES users (id) ON DELETE SET NULL,
    use_case             text,
    status               text NOT NULL DEFAULT 'active',
    -- seed 001 room fields
    room_type            text,
    room_token           text UNIQUE,
    host                 text,
    cmd_port             integer CHECK (cmd_port BETWEEN 1 AND 65535),
    viz_port             integer CHECK (viz_port BETWEEN 1 AND 65535),
    -- For 1:1 conversations: the two members in a fixed order, so creating one twice finds the first.
    direct_key           text UNIQUE,
    anonymous_token_hash text UNIQUE,
    last_message_at      timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT conversations_anonymous_has_no_owner CHECK (kind <> 'anonymous' OR user_id IS NULL)
);
CREATE INDEX conversations_user_idx ON conversations (user_id);
CREATE INDEX conversations_created_by_idx ON conversations (created_by);
CREATE INDEX conversations_created_at_idx ON conversations (created_at);
CREATE INDEX conversations_is_group_idx ON conversations (is_group);
CREATE INDEX conversations_anonymous_idx ON conversations (created_at, id) WHERE kind = 'anonymous';

CREATE TABLE participants (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id      uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role                 text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member', 'ai')),
    -- The caller's read cursor: every message up to this id has been read.
    last_read_message_id bigint,
    last_read_at         timestamptz,
    joined_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, user_id)
);
CREATE INDEX participants_user_idx ON participants (user_id);
CREATE INDEX participants_role_idx ON participants (role);

CREATE TABLE conversation_threads (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id     uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id             uuid REFERENCES users (id) ON DELETE SET NULL,
    title               text,
    -- Thread metadata; the seed's embedded thread_data.messages are rows of messages with this thread_id.
    thread_data         jsonb NOT NULL DEFAULT '{}'::jsonb,
    model_id            text,
    tokens_input_total  bigint NOT NULL DEFAULT 0,
    tokens_output_total bigint NOT NULL DEFAULT 0,
    tokens_cached_total bigint NOT NULL DEFAULT 0,
    tokens_total        bigint NOT NULL DEFAULT 0,
    requests_count      bigint NOT NULL DEFAULT 0,
    cost_total_usd      numeric(16, 6) NOT NULL DEFAULT 0,
    last_usage_at       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversation_threads_conversation_idx ON conversation_threads (conversation_id, created_at DESC);

CREATE TABLE messages (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id   uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    thread_id         uuid REFERENCES conversation_threads (id) ON DELETE CASCADE,
    sender_id         uuid REFERENCES users (id) ON DELETE SET NULL,
    sender_kind       text NOT NULL DEFAULT 'user' CHECK (sender_kind IN ('user', 'ai', 'system')),
    content           text NOT NULL,
    attachments       jsonb NOT NULL DEFAULT '[]'::jsonb,
    status            text NOT NULL DEFAULT 'sent' CHECK (status IN ('sent', 'delivered', 'read')),
    status_timestamps jsonb NOT NULL DEFAULT '{}'::jsonb,
    model_id          text,
    -- A client's key for a send: a retried send finds the first message instead of adding a second.
    idempotency_key   text,
    search_vector     tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
    created_at        timestamptz NOT NULL DEFAULT now(),
    edited_at         timestamptz
);
CREATE INDEX messages_conversation_created_idx ON messages (conversation_id, created_at DESC, id DESC);
CREATE INDEX messages_conversation_id_idx ON messages (conversation_id, id);
CREATE INDEX messages_thread_idx ON messages (thread_id, id) WHERE thread_id IS NOT NULL;
CREATE INDEX messages_sender_idx ON messages (sender_id);
CREATE INDEX messages_created_at_idx ON messages (created_at);
CREATE INDEX messages_status_idx ON messages (status);
CREATE INDEX messages_search_idx ON messages USING gin (search_vector);
CREATE UNIQUE INDEX messages_idempotency_key ON messages (conversation_id, sender_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

ALTER TABLE participants
    ADD CONSTRAINT participants_last_read_message_fk
    FOREIGN KEY (last_read_message_id) REFERENCES messages (id) ON DELETE SET NULL;

-- Earlier versions of an edited message.
CREATE TABLE message_edits (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id       bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    previous_content text NOT NULL,
    edited_by        uuid REFERENCES users (id) ON DELETE SET NULL,
    edited_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_edits_message_idx ON message_edits (message_id, edited_at);

CREATE TABLE message_reactions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      text NOT NULL CHECK (char_length(emoji) BETWEEN 1 AND 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, user_id, emoji)
);
CREATE INDEX message_reactions_user_idx ON message_reactions (user_id);

CREATE TABLE message_feedback (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id     bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    rating         integer CHECK (rating BETWEEN 1 AND 5),
    model_name     text,
    model_provider text,
    temperature    double precision CHECK (temperature >= 0),
    max_tokens     integer CHECK (max_tokens > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, user_id)
);
CREATE INDEX message_feedback_user_idx ON message_feedback (user_id);

-- Files, panels and data references (seed 001) ------------------------------------------------------------

CREATE TABLE user_files (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    original_name   text NOT NULL,
    content_type    text NOT NULL DEFAULT 'application/octet-stream',
    size            bigint NOT NULL CHECK (size >= 0),
    storage_key     text NOT NULL UNIQUE,
    sha256          text,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'uploaded')),
    companion_files jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_files_owner_idx ON user_files (owner_id, created_at DESC, id DESC);
CREATE UNIQUE INDEX user_files_owner_sha256_key ON user_files (owner_id, sha256) WHERE sha256 IS NOT NULL;

CREATE TABLE message_attachments (
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    file_id    uuid NOT NULL REFERENCES user_files (id) ON DELETE CASCADE,
    PRIMARY KEY (message_id, file_id)
);
CREATE INDEX message_attachments_file_idx ON message_attachments (file_id);

CREATE TABLE dashboard_panels (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    layout          jsonb NOT NULL DEFAULT '{}'::jsonb,
    config          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dashboard_panels_conversation_idx ON dashboard_panels (conversation_id, created_at, id);

CREATE TABLE room_data_refs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    file_id         uuid NOT NULL REFERENCES user_files (id) ON DELETE CASCADE,
    panel_id        uuid REFERENCES dashboard_panels (id) ON DELETE SET NULL,
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX room_data_refs_conversation_idx ON room_data_refs (conversation_id, created_at, id);
CREATE INDEX room_data_refs_file_idx ON room_data_refs (file_id);

-- Models, resources, cache ---------------------------------------------------------------------------------

CREATE TABLE deployed_resources (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- SET NULL: a running endpoint costs money; deleting a chat must not lose track of it.
    conversation_id       uuid REFERENCES conversations (id) ON DELETE SET NULL,
    user_id               uuid REFERENCES users (id) ON DELETE SET NULL,
    resource_name         text NOT NULL,
    resource_type         text NOT NULL CHECK (resource_type IN ('bedrock', 'sagemaker', 'nvidia-nim')),
    aws_resource_id       text,
    instance_type         text,
    region                text,
    status                text NOT NULL DEFAULT 'pending',
    endpoint_url          text,
    estimated_hourly_cost numeric(10, 4) CHECK (estimated_hourly_cost >= 0),
    deployment_config     jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_active             boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployed_resources_aws_resource_idx ON deployed_resources (aws_resource_id);
CREATE INDEX deployed_resources_conversation_idx ON deployed_resources (conversation_id);
CREATE INDEX deployed_resources_user_idx ON deployed_resources (user_id, created_at DESC, id DESC);

CREATE TABLE model_configurations (
    id                              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    model_id                        text NOT NULL UNIQUE,
    display_name                    text,
    -- Which client calls the model; the catalog is data, so adding a model needs no deploy.
    provider                        text NOT NULL DEFAULT 'local'
                                    CHECK (provider IN ('bedrock', 'sagemaker', 'openai-compatible', 'local')),
    -- The provider's own name for the model (Bedrock model id, SageMaker endpoint, upstream model name).
    provider_model_id               text,
    -- seed 000: a configuration may belong to one deployed resource ("matches resource ID").
    deployed_resource_id            uuid UNIQUE REFERENCES deployed_resources (id) ON DELETE SET NULL,
    system_prompt                   text,
    per_1k_input_tokens_usd         numeric(10, 6) NOT NULL DEFAULT 0 CHECK (per_1k_input_tokens_usd >= 0),
    per_1k_output_tokens_usd        numeric(10, 6) NOT NULL DEFAULT 0 CHECK (per_1k_output_tokens_usd >= 0),
    per_1k_cached_input_tokens_usd  numeric(10, 6) CHECK (per_1k_cached_input_tokens_usd >= 0),
    context_window_tokens           integer NOT NULL DEFAULT 8192 CHECK (context_window_tokens > 0),
    max_output_tokens               integer NOT NULL DEFAULT 1024 CHECK (max_output_tokens > 0),
    is_active                       boolean NOT NULL DEFAULT true,
    updated_by                      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ai_cache (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    model          text NOT NULL,
    prompt_hash    text NOT NULL,
    prompt_summary text NOT NULL,
    response_text  text NOT NULL,
    tokens_used    integer NOT NULL CHECK (tokens_used >= 0),
    tokens_input   integer NOT NULL DEFAULT 0,
    tokens_output  integer NOT NULL DEFAULT 0,
    cost_estimate  numeric(10, 6) NOT NULL,
    hit_count      integer NOT NULL DEFAULT 0,
    last_hit_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    ttl            timestamptz NOT NULL,
    UNIQUE (model, prompt_hash)
);
CREATE INDEX ai_cache_ttl_idx ON ai_cache (ttl);
CREATE INDEX ai_cache_created_at_idx ON ai_cache (created_at);

-- Agents, code executions, analysis reports (seed 002) ----------------------------------------------------

CREATE TABLE agent_templates (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    template_name   text NOT NULL UNIQUE,
    display_name    text,
    description     text NOT NULL,
    prompt_template text NOT NULL,
    icon_url        text,
    category        text,
    is_premium_only boolean NOT NULL DEFAULT false,
    variant_type    text NOT NULL DEFAULT 'individual' CHECK (variant_type IN ('planner', 'individual', 'both')),
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_template_preferences (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    template_id  uuid NOT NULL REFERENCES agent_templates (id) ON DELETE CASCADE,
    is_enabled   boolean NOT NULL DEFAULT true,
    usage_count  integer NOT NULL DEFAULT 0 CHECK (usage_count >= 0),
    last_used_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, template_id)
);
CREATE INDEX user_template_preferences_template_idx ON user_template_preferences (template_id);

CREATE TABLE code_executions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id      bigint REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         uuid REFERENCES users (id) ON DELETE SET NULL,
    initial_code    text,
    latest_code     text,
    is_successful   boolean NOT NULL DEFAULT false,
    output          text,
    model_provider  text,
    model_name      text,
    failed_agents   jsonb NOT NULL DEFAULT '[]'::jsonb,
    error_messages  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX code_executions_conversation_idx ON code_executions (conversation_id, created_at DESC, id DESC);
CREATE INDEX code_executions_message_idx ON code_executions (message_id);
CREATE INDEX code_executions_user_idx ON code_executions (user_id, created_at DESC, id DESC);

CREATE TABLE deep_analysis_reports (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    report_uuid         text NOT NULL UNIQUE CHECK (char_length(report_uuid) BETWEEN 1 AND 100),
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    goal                text NOT NULL,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    start_time          timestamptz NOT NULL DEFAULT now(),
    end_time            timestamptz,
    duration_seconds    integer CHECK (duration_seconds >= 0),
    deep_questions      text,
    deep_plan           text,
    summaries           jsonb,
    analysis_code       text,
    plotly_figures      jsonb,
    synthesis           jsonb,
    final_conclusion    text,
    html_report         text,
    progress_percentage integer NOT NULL DEFAULT 0 CHECK (progress_percentage BETWEEN 0 AND 100),
    total_tokens_used   integer NOT NULL DEFAULT 0 CHECK (total_tokens_used >= 0),
    estimated_cost      numeric(12, 6) NOT NULL DEFAULT 0 CHECK (estimated_cost >= 0),
    credits_consumed    integer NOT NULL DEFAULT 0 CHECK (credits_consumed >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deep_analysis_reports_user_idx ON deep_analysis_reports (user_id, created_at DESC, id DESC);

-- Usage ------------------------------------------------------------------------------------------------------

-- One row per model request: seed 002 model_usage and seed 001 turn_metrics_record.
CREATE TABLE model_usage (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Set by the producer; the aggregator inserts ON CONFLICT (event_id) DO NOTHING.
    event_id          uuid NOT NULL UNIQUE,
    user_id           uuid REFERENCES users (id) ON DELETE SET NULL,
    conversation_id   uuid REFERENCES conversations (id) ON DELETE SET NULL,
    thread_id         uuid REFERENCES conversation_threads (id) ON DELETE SET NULL,
    message_id        bigint REFERENCES messages (id) ON DELETE SET NULL,
    turn_number       integer,
    model_name        text NOT NULL,
    provider          text NOT NULL,
    prompt_tokens     integer NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens integer NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    cached_tokens     integer NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),
    total_tokens      integer NOT NULL DEFAULT 0 CHECK (total_tokens >= 0),
    query_size        integer NOT NULL DEFAULT 0,
    response_size     integer NOT NULL DEFAULT 0,
    cost              numeric(14, 8) NOT NULL DEFAULT 0 CHECK (cost >= 0),
    cost_avoided      numeric(14, 8) NOT NULL DEFAULT 0 CHECK (cost_avoided >= 0),
    cache_hit         boolean NOT NULL DEFAULT false,
    is_streaming      boolean NOT NULL DEFAULT false,
    request_time_ms   integer NOT NULL DEFAULT 0 CHECK (request_time_ms >= 0),
    classification    text,
    "timestamp"       timestamptz NOT NULL DEFAULT now(),
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_usage_user_time_idx ON model_usage (user_id, "timestamp" DESC);
CREATE INDEX model_usage_model_time_idx ON model_usage (model_name, "timestamp" DESC);
CREATE INDEX model_usage_conversation_idx ON model_usage (conversation_id, turn_number);
CREATE INDEX model_usage_thread_idx ON model_usage (thread_id);

-- Daily totals per user and model, kept by the aggregator; reports read these, not model_usage.
CREATE TABLE usage_daily (
    day               date NOT NULL,
    user_id           uuid REFERENCES users (id) ON DELETE SET NULL,
    model_name        text NOT NULL,
    provider          text NOT NULL,
    requests_count    bigint NOT NULL DEFAULT 0,
    cache_hits        bigint NOT NULL DEFAULT 0,
    prompt_tokens     bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    cached_tokens     bigint NOT NULL DEFAULT 0,
    total_tokens      bigint NOT NULL DEFAULT 0,
    cost_usd          numeric(18, 8) NOT NULL DEFAULT 0,
    cost_avoided_usd  numeric(18, 8) NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT usage_daily_key UNIQUE NULLS NOT DISTINCT (day, user_id, model_name, provider)
);
CREATE INDEX usage_daily_user_day_idx ON usage_daily (user_id, day);
CREATE INDEX usage_daily_day_idx ON usage_daily (day);

-- Legacy views -------------------------------------------------------------------------------------------------

-- seed 000's chat_messages, being phased out there: served read-only from messages.
CREATE VIEW chat_messages AS
SELECT m.id, m.conversation_id, m.thread_id, m.sender_id AS user_id, m.sender_kind AS role, m.content,
       m.created_at
FROM messages m;

-- updated_at triggers ---------------------------------------------------------------------------------------

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'users', 'user_properties', 'licenses', 'conversations', 'conversation_threads', 'message_feedback',
        'user_files', 'dashboard_panels', 'deployed_resources', 'model_configurations', 'agent_templates',
        'user_template_preferences', 'code_executions', 'deep_analysis_reports', 'usage_daily'
    ] LOOP
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION confab_touch_updated_at()',
            t || '_touch_updated_at', t
        );
    END LOOP;
END;
$$;
