
export type Json = string | number | boolean | null | { [key: string]: Json | undefined } | Json[]

export type Database = {
  
  "public": {
          Tables: {
            "app_versions": {
                  Row: {
                    "app_id": string,"bundle_url": string,"checksum": string,"created_at": string,"id": number,"name": string,"org_id": string
                  }
                  ComputedFields: never
                  Insert: {
                    "app_id": string,"bundle_url": string,"checksum": string,"created_at"?: string,"id"?: never,"name": string,"org_id": string
                  }
                  Update: {
                    "app_id"?: string,"bundle_url"?: string,"checksum"?: string,"created_at"?: string,"id"?: never,"name"?: string,"org_id"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "app_versions_app_id_org_id_fkey"
      columns: ["app_id","org_id"]
isOneToOne: false
      referencedRelation: "apps"
      referencedColumns: ["app_id","org_id"]
    }
                  ]
                },"apps": {
                  Row: {
                    "app_id": string,"created_at": string,"name": string,"org_id": string
                  }
                  ComputedFields: never
                  Insert: {
                    "app_id": string,"created_at"?: string,"name": string,"org_id": string
                  }
                  Update: {
                    "app_id"?: string,"created_at"?: string,"name"?: string,"org_id"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "apps_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"channel_devices": {
                  Row: {
                    "app_id": string,"channel_id": number,"device_id": string,"org_id": string,"set_by": string,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "app_id": string,"channel_id": number,"device_id": string,"org_id": string,"set_by": string,"updated_at"?: string
                  }
                  Update: {
                    "app_id"?: string,"channel_id"?: number,"device_id"?: string,"org_id"?: string,"set_by"?: string,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "channel_devices_app_id_org_id_fkey"
      columns: ["app_id","org_id"]
isOneToOne: false
      referencedRelation: "apps"
      referencedColumns: ["app_id","org_id"]
    },{
      foreignKeyName: "channel_devices_channel_id_app_id_fkey"
      columns: ["channel_id","app_id"]
isOneToOne: false
      referencedRelation: "channels"
      referencedColumns: ["id","app_id"]
    }
                  ]
                },"channels": {
                  Row: {
                    "allow_device_self_set": boolean,"app_id": string,"created_at": string,"id": number,"is_default": boolean,"name": string,"org_id": string,"version_id": number | null
                  }
                  ComputedFields: never
                  Insert: {
                    "allow_device_self_set"?: boolean,"app_id": string,"created_at"?: string,"id"?: never,"is_default"?: boolean,"name": string,"org_id": string,"version_id"?: number | null
                  }
                  Update: {
                    "allow_device_self_set"?: boolean,"app_id"?: string,"created_at"?: string,"id"?: never,"is_default"?: boolean,"name"?: string,"org_id"?: string,"version_id"?: number | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "channels_app_id_org_id_fkey"
      columns: ["app_id","org_id"]
isOneToOne: false
      referencedRelation: "apps"
      referencedColumns: ["app_id","org_id"]
    },{
      foreignKeyName: "channels_version_id_app_id_fkey"
      columns: ["version_id","app_id"]
isOneToOne: false
      referencedRelation: "app_versions"
      referencedColumns: ["id","app_id"]
    }
                  ]
                },"credit_alert_outbox": {
                  Row: {
                    "attempts": number,"cancel_reason": string | null,"created_at": string,"delivered_at": string | null,"grant_id": string,"id": string,"last_error": string | null,"last_status_code": number | null,"lease_expires_at": string | null,"next_attempt_at": string,"org_id": string,"payload": NonNullable<Json>,"status": string,"threshold": number,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "attempts"?: number,"cancel_reason"?: string | null,"created_at"?: string,"delivered_at"?: string | null,"grant_id": string,"id"?: string,"last_error"?: string | null,"last_status_code"?: number | null,"lease_expires_at"?: string | null,"next_attempt_at"?: string,"org_id": string,"payload": NonNullable<Json>,"status"?: string,"threshold": number,"updated_at"?: string
                  }
                  Update: {
                    "attempts"?: number,"cancel_reason"?: string | null,"created_at"?: string,"delivered_at"?: string | null,"grant_id"?: string,"id"?: string,"last_error"?: string | null,"last_status_code"?: number | null,"lease_expires_at"?: string | null,"next_attempt_at"?: string,"org_id"?: string,"payload"?: NonNullable<Json>,"status"?: string,"threshold"?: number,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_alert_outbox_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_auto_topup_settings": {
                  Row: {
                    "amount": number,"enabled": boolean,"monthly_cap": number,"org_id": string,"threshold": number,"updated_at": string,"updated_by": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "amount": number,"enabled"?: boolean,"monthly_cap": number,"org_id": string,"threshold": number,"updated_at"?: string,"updated_by"?: string | null
                  }
                  Update: {
                    "amount"?: number,"enabled"?: boolean,"monthly_cap"?: number,"org_id"?: string,"threshold"?: number,"updated_at"?: string,"updated_by"?: string | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_auto_topup_settings_org_id_fkey"
      columns: ["org_id"]
isOneToOne: true
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_balances": {
                  Row: {
                    "alert_grant_amount": number | null,"alert_grant_id": string | null,"alert_threshold_next": number | null,"auto_topup_threshold": number | null,"available": number,"held": number,"org_id": string,"overage": number,"overage_limit": number,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "alert_grant_amount"?: number | null,"alert_grant_id"?: string | null,"alert_threshold_next"?: number | null,"auto_topup_threshold"?: number | null,"available"?: number,"held"?: number,"org_id": string,"overage"?: number,"overage_limit"?: number,"updated_at"?: string
                  }
                  Update: {
                    "alert_grant_amount"?: number | null,"alert_grant_id"?: string | null,"alert_threshold_next"?: number | null,"auto_topup_threshold"?: number | null,"available"?: number,"held"?: number,"org_id"?: string,"overage"?: number,"overage_limit"?: number,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_balances_org_id_fkey"
      columns: ["org_id"]
isOneToOne: true
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_grants": {
                  Row: {
                    "activated_at": string | null,"amount": number,"created_at": string,"effective_at": string | null,"expired_amount": number,"expired_at": string | null,"expires_at": string | null,"external_ref": string | null,"id": string,"metadata": NonNullable<Json>,"operations": (string)[] | null,"org_id": string,"overage_repaid": number,"pending_since": string | null,"priority": number,"remaining": number,"revoked_amount": number,"source": string,"status": string
                  }
                  ComputedFields: never
                  Insert: {
                    "activated_at"?: string | null,"amount": number,"created_at"?: string,"effective_at"?: string | null,"expired_amount"?: number,"expired_at"?: string | null,"expires_at"?: string | null,"external_ref"?: string | null,"id"?: string,"metadata"?: NonNullable<Json>,"operations"?: (string)[] | null,"org_id": string,"overage_repaid"?: number,"pending_since"?: string | null,"priority"?: number,"remaining": number,"revoked_amount"?: number,"source": string,"status"?: string
                  }
                  Update: {
                    "activated_at"?: string | null,"amount"?: number,"created_at"?: string,"effective_at"?: string | null,"expired_amount"?: number,"expired_at"?: string | null,"expires_at"?: string | null,"external_ref"?: string | null,"id"?: string,"metadata"?: NonNullable<Json>,"operations"?: (string)[] | null,"org_id"?: string,"overage_repaid"?: number,"pending_since"?: string | null,"priority"?: number,"remaining"?: number,"revoked_amount"?: number,"source"?: string,"status"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_grants_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_ledger": {
                  Row: {
                    "actor_role": string,"actor_user_id": string | null,"amount": number,"balance_after": number,"created_at": string,"grant_id": string | null,"held_after": number,"held_delta": number,"id": number,"kind": string,"metadata": NonNullable<Json>,"org_id": string,"overage_after": number,"overage_delta": number,"request_id": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "actor_role": string,"actor_user_id"?: string | null,"amount": number,"balance_after": number,"created_at"?: string,"grant_id"?: string | null,"held_after": number,"held_delta"?: number,"id"?: never,"kind": string,"metadata"?: NonNullable<Json>,"org_id": string,"overage_after"?: number,"overage_delta"?: number,"request_id"?: string | null
                  }
                  Update: {
                    "actor_role"?: string,"actor_user_id"?: string | null,"amount"?: number,"balance_after"?: number,"created_at"?: string,"grant_id"?: string | null,"held_after"?: number,"held_delta"?: number,"id"?: never,"kind"?: string,"metadata"?: NonNullable<Json>,"org_id"?: string,"overage_after"?: number,"overage_delta"?: number,"request_id"?: string | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_ledger_grant_id_fkey"
      columns: ["grant_id"]
isOneToOne: false
      referencedRelation: "credit_grants"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_prices": {
                  Row: {
                    "active": boolean,"created_at": string,"credits": number,"description": string | null,"operation": string,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "active"?: boolean,"created_at"?: string,"credits": number,"description"?: string | null,"operation": string,"updated_at"?: string
                  }
                  Update: {
                    "active"?: boolean,"created_at"?: string,"credits"?: number,"description"?: string | null,"operation"?: string,"updated_at"?: string
                  }
                  Relationships: [
                    
                  ]
                },"credit_reconciliation_issues": {
                  Row: {
                    "actual": number | null,"check_name": string,"detail": NonNullable<Json>,"detected_at": string,"expected": number | null,"id": number,"org_id": string | null,"run_id": number
                  }
                  ComputedFields: never
                  Insert: {
                    "actual"?: number | null,"check_name": string,"detail"?: NonNullable<Json>,"detected_at"?: string,"expected"?: number | null,"id"?: never,"org_id"?: string | null,"run_id": number
                  }
                  Update: {
                    "actual"?: number | null,"check_name"?: string,"detail"?: NonNullable<Json>,"detected_at"?: string,"expected"?: number | null,"id"?: never,"org_id"?: string | null,"run_id"?: number
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_reconciliation_issues_run_id_fkey"
      columns: ["run_id"]
isOneToOne: false
      referencedRelation: "credit_reconciliation_runs"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_reconciliation_runs": {
                  Row: {
                    "finished_at": string | null,"id": number,"issues_found": number | null,"orgs_checked": number | null,"payment_exceptions": number | null,"started_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "finished_at"?: string | null,"id"?: never,"issues_found"?: number | null,"orgs_checked"?: number | null,"payment_exceptions"?: number | null,"started_at"?: string
                  }
                  Update: {
                    "finished_at"?: string | null,"id"?: never,"issues_found"?: number | null,"orgs_checked"?: number | null,"payment_exceptions"?: number | null,"started_at"?: string
                  }
                  Relationships: [
                    
                  ]
                },"credit_requests": {
                  Row: {
                    "allocations": NonNullable<Json>,"backend_endpoint": string | null,"backend_error": boolean,"balance_after": number,"balance_before": number,"charged": number,"completed_at": string | null,"created_at": string,"error_code": string | null,"hold_expires_at": string | null,"input_summary": Json | null,"kind": string,"latency_ms": number | null,"metadata": NonNullable<Json>,"operation": string,"org_id": string,"output_summary": Json | null,"quantity": number,"refund_reason": string | null,"refunded": number,"refunded_at": string | null,"request_id": string,"reserved": number,"status": string,"success": boolean | null,"unit_price": number,"user_id": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "allocations"?: NonNullable<Json>,"backend_endpoint"?: string | null,"backend_error"?: boolean,"balance_after": number,"balance_before": number,"charged"?: number,"completed_at"?: string | null,"created_at"?: string,"error_code"?: string | null,"hold_expires_at"?: string | null,"input_summary"?: Json | null,"kind": string,"latency_ms"?: number | null,"metadata"?: NonNullable<Json>,"operation": string,"org_id": string,"output_summary"?: Json | null,"quantity": number,"refund_reason"?: string | null,"refunded"?: number,"refunded_at"?: string | null,"request_id": string,"reserved"?: number,"status": string,"success"?: boolean | null,"unit_price": number,"user_id"?: string | null
                  }
                  Update: {
                    "allocations"?: NonNullable<Json>,"backend_endpoint"?: string | null,"backend_error"?: boolean,"balance_after"?: number,"balance_before"?: number,"charged"?: number,"completed_at"?: string | null,"created_at"?: string,"error_code"?: string | null,"hold_expires_at"?: string | null,"input_summary"?: Json | null,"kind"?: string,"latency_ms"?: number | null,"metadata"?: NonNullable<Json>,"operation"?: string,"org_id"?: string,"output_summary"?: Json | null,"quantity"?: number,"refund_reason"?: string | null,"refunded"?: number,"refunded_at"?: string | null,"request_id"?: string,"reserved"?: number,"status"?: string,"success"?: boolean | null,"unit_price"?: number,"user_id"?: string | null
                  }
                  Relationships: [
                    
                  ]
                },"credit_revocations": {
                  Row: {
                    "actor_role": string,"actor_user_id": string | null,"allocations": NonNullable<Json>,"amount": number,"balance_after": number,"created_at": string,"external_ref": string,"grant_id": string | null,"metadata": NonNullable<Json>,"org_id": string,"overage": number,"overage_restored": number,"reason": string,"revoked": number,"shortfall": number
                  }
                  ComputedFields: never
                  Insert: {
                    "actor_role": string,"actor_user_id"?: string | null,"allocations"?: NonNullable<Json>,"amount": number,"balance_after": number,"created_at"?: string,"external_ref": string,"grant_id"?: string | null,"metadata"?: NonNullable<Json>,"org_id": string,"overage"?: number,"overage_restored"?: number,"reason": string,"revoked": number,"shortfall": number
                  }
                  Update: {
                    "actor_role"?: string,"actor_user_id"?: string | null,"allocations"?: NonNullable<Json>,"amount"?: number,"balance_after"?: number,"created_at"?: string,"external_ref"?: string,"grant_id"?: string | null,"metadata"?: NonNullable<Json>,"org_id"?: string,"overage"?: number,"overage_restored"?: number,"reason"?: string,"revoked"?: number,"shortfall"?: number
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_revocations_grant_id_fkey"
      columns: ["grant_id"]
isOneToOne: false
      referencedRelation: "credit_grants"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "credit_revocations_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_topup_requests": {
                  Row: {
                    "amount": number,"attempts": number,"cancel_reason": string | null,"created_at": string,"error": string | null,"grant_id": string | null,"id": string,"lease_expires_at": string | null,"next_attempt_at": string,"org_id": string,"payment_intent_id": string | null,"status": string,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "amount": number,"attempts"?: number,"cancel_reason"?: string | null,"created_at"?: string,"error"?: string | null,"grant_id"?: string | null,"id"?: string,"lease_expires_at"?: string | null,"next_attempt_at"?: string,"org_id": string,"payment_intent_id"?: string | null,"status"?: string,"updated_at"?: string
                  }
                  Update: {
                    "amount"?: number,"attempts"?: number,"cancel_reason"?: string | null,"created_at"?: string,"error"?: string | null,"grant_id"?: string | null,"id"?: string,"lease_expires_at"?: string | null,"next_attempt_at"?: string,"org_id"?: string,"payment_intent_id"?: string | null,"status"?: string,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_topup_requests_grant_id_fkey"
      columns: ["grant_id"]
isOneToOne: false
      referencedRelation: "credit_grants"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "credit_topup_requests_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_usage_prefix": {
                  Row: {
                    "bucket_start": string,"calls": number,"credits_used": number,"failed_calls": number,"latency_count": number,"latency_ms_sum": number,"operation": string,"org_id": string,"successful_calls": number
                  }
                  ComputedFields: never
                  Insert: {
                    "bucket_start": string,"calls"?: number,"credits_used"?: number,"failed_calls"?: number,"latency_count"?: number,"latency_ms_sum"?: number,"operation": string,"org_id": string,"successful_calls"?: number
                  }
                  Update: {
                    "bucket_start"?: string,"calls"?: number,"credits_used"?: number,"failed_calls"?: number,"latency_count"?: number,"latency_ms_sum"?: number,"operation"?: string,"org_id"?: string,"successful_calls"?: number
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_usage_prefix_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"credit_usage_rollup": {
                  Row: {
                    "bucket_start": string,"calls": number,"credits_used": number,"failed_calls": number,"grain": string,"latency_count": number,"latency_ms_sum": number,"operation": string,"org_id": string,"successful_calls": number
                  }
                  ComputedFields: never
                  Insert: {
                    "bucket_start": string,"calls"?: number,"credits_used"?: number,"failed_calls"?: number,"grain": string,"latency_count"?: number,"latency_ms_sum"?: number,"operation": string,"org_id": string,"successful_calls"?: number
                  }
                  Update: {
                    "bucket_start"?: string,"calls"?: number,"credits_used"?: number,"failed_calls"?: number,"grain"?: string,"latency_count"?: number,"latency_ms_sum"?: number,"operation"?: string,"org_id"?: string,"successful_calls"?: number
                  }
                  Relationships: [
                    {
      foreignKeyName: "credit_usage_rollup_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"device_events": {
                  Row: {
                    "action": string,"app_id": string,"created_at": string,"device_id": string,"id": number,"is_emulator": boolean,"is_prod": boolean,"platform": string,"plugin_version": string,"version_build": string,"version_name": string
                  }
                  ComputedFields: never
                  Insert: {
                    "action": string,"app_id": string,"created_at"?: string,"device_id": string,"id"?: never,"is_emulator": boolean,"is_prod": boolean,"platform": string,"plugin_version": string,"version_build": string,"version_name": string
                  }
                  Update: {
                    "action"?: string,"app_id"?: string,"created_at"?: string,"device_id"?: string,"id"?: never,"is_emulator"?: boolean,"is_prod"?: boolean,"platform"?: string,"plugin_version"?: string,"version_build"?: string,"version_name"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "device_events_app_id_fkey"
      columns: ["app_id"]
isOneToOne: false
      referencedRelation: "apps"
      referencedColumns: ["app_id"]
    }
                  ]
                },"meter_backends": {
                  Row: {
                    "created_at": string,"enabled": boolean,"operation": string,"timeout_ms": number,"updated_at": string,"url": string
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string,"enabled"?: boolean,"operation": string,"timeout_ms"?: number,"updated_at"?: string,"url": string
                  }
                  Update: {
                    "created_at"?: string,"enabled"?: boolean,"operation"?: string,"timeout_ms"?: number,"updated_at"?: string,"url"?: string
                  }
                  Relationships: [
                    
                  ]
                },"meter_requests": {
                  Row: {
                    "body": string | null,"completed_at": string | null,"content_type": string | null,"created_at": string,"fingerprint": string | null,"org_id": string,"request_id": string,"status": number | null,"user_id": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "body"?: string | null,"completed_at"?: string | null,"content_type"?: string | null,"created_at"?: string,"fingerprint"?: string | null,"org_id": string,"request_id": string,"status"?: number | null,"user_id"?: string | null
                  }
                  Update: {
                    "body"?: string | null,"completed_at"?: string | null,"content_type"?: string | null,"created_at"?: string,"fingerprint"?: string | null,"org_id"?: string,"request_id"?: string,"status"?: number | null,"user_id"?: string | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "meter_requests_org_id_request_id_fkey"
      columns: ["org_id","request_id"]
isOneToOne: true
      referencedRelation: "credit_requests"
      referencedColumns: ["org_id","request_id"]
    }
                  ]
                },"org_alert_webhooks": {
                  Row: {
                    "org_id": string,"secret": string,"updated_at": string,"updated_by": string | null,"url": string
                  }
                  ComputedFields: never
                  Insert: {
                    "org_id": string,"secret": string,"updated_at"?: string,"updated_by"?: string | null,"url": string
                  }
                  Update: {
                    "org_id"?: string,"secret"?: string,"updated_at"?: string,"updated_by"?: string | null,"url"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "org_alert_webhooks_org_id_fkey"
      columns: ["org_id"]
isOneToOne: true
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"org_billing": {
                  Row: {
                    "org_id": string,"stripe_customer_id": string,"stripe_payment_method_id": string | null,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "org_id": string,"stripe_customer_id": string,"stripe_payment_method_id"?: string | null,"updated_at"?: string
                  }
                  Update: {
                    "org_id"?: string,"stripe_customer_id"?: string,"stripe_payment_method_id"?: string | null,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "org_billing_org_id_fkey"
      columns: ["org_id"]
isOneToOne: true
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"org_members": {
                  Row: {
                    "created_at": string,"org_id": string,"role": string,"user_id": string
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string,"org_id": string,"role": string,"user_id": string
                  }
                  Update: {
                    "created_at"?: string,"org_id"?: string,"role"?: string,"user_id"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "org_members_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"orgs": {
                  Row: {
                    "created_at": string,"has_usage_credits": boolean,"id": string,"name": string,"personal_user_id": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string,"has_usage_credits"?: boolean,"id"?: string,"name": string,"personal_user_id"?: string | null
                  }
                  Update: {
                    "created_at"?: string,"has_usage_credits"?: boolean,"id"?: string,"name"?: string,"personal_user_id"?: string | null
                  }
                  Relationships: [
                    
                  ]
                },"payment_exceptions": {
                  Row: {
                    "created_at": string,"detail": NonNullable<Json>,"event_id": string,"event_type": string,"id": number,"object_id": string | null,"org_id": string | null,"reason": string,"resolution": string | null,"resolved_at": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string,"detail"?: NonNullable<Json>,"event_id": string,"event_type": string,"id"?: never,"object_id"?: string | null,"org_id"?: string | null,"reason": string,"resolution"?: string | null,"resolved_at"?: string | null
                  }
                  Update: {
                    "created_at"?: string,"detail"?: NonNullable<Json>,"event_id"?: string,"event_type"?: string,"id"?: never,"object_id"?: string | null,"org_id"?: string | null,"reason"?: string,"resolution"?: string | null,"resolved_at"?: string | null
                  }
                  Relationships: [
                    
                  ]
                },"replica_heartbeat": {
                  Row: {
                    "beat_at": string,"id": boolean
                  }
                  ComputedFields: never
                  Insert: {
                    "beat_at": string,"id"?: boolean
                  }
                  Update: {
                    "beat_at"?: string,"id"?: boolean
                  }
                  Relationships: [
                    
                  ]
                },"stripe_payments": {
                  Row: {
                    "adjustments": number,"amount": number | null,"amount_refunded": number,"checkout_session_id": string | null,"created_at": string,"credits": number | null,"credits_revoked": number,"credits_target": number,"currency": string | null,"disputes": NonNullable<Json>,"grant_id": string | null,"org_id": string | null,"payment_intent_id": string,"shortfall": number | null,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "adjustments"?: number,"amount"?: number | null,"amount_refunded"?: number,"checkout_session_id"?: string | null,"created_at"?: string,"credits"?: number | null,"credits_revoked"?: number,"credits_target"?: number,"currency"?: string | null,"disputes"?: NonNullable<Json>,"grant_id"?: string | null,"org_id"?: string | null,"payment_intent_id": string,"shortfall"?: never,"updated_at"?: string
                  }
                  Update: {
                    "adjustments"?: number,"amount"?: number | null,"amount_refunded"?: number,"checkout_session_id"?: string | null,"created_at"?: string,"credits"?: number | null,"credits_revoked"?: number,"credits_target"?: number,"currency"?: string | null,"disputes"?: NonNullable<Json>,"grant_id"?: string | null,"org_id"?: string | null,"payment_intent_id"?: string,"shortfall"?: never,"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "stripe_payments_grant_id_fkey"
      columns: ["grant_id"]
isOneToOne: false
      referencedRelation: "credit_grants"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "stripe_payments_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                },"workflow_executions": {
                  Row: {
                    "created_at": string,"created_by": string | null,"id": string,"input": NonNullable<Json>,"org_id": string,"request_id": string,"status": string,"workflow_id": string
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string,"created_by"?: string | null,"id"?: string,"input"?: NonNullable<Json>,"org_id": string,"request_id": string,"status"?: string,"workflow_id": string
                  }
                  Update: {
                    "created_at"?: string,"created_by"?: string | null,"id"?: string,"input"?: NonNullable<Json>,"org_id"?: string,"request_id"?: string,"status"?: string,"workflow_id"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "workflow_executions_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "workflow_executions_workflow_id_fkey"
      columns: ["workflow_id"]
isOneToOne: false
      referencedRelation: "workflows"
      referencedColumns: ["id"]
    }
                  ]
                },"workflows": {
                  Row: {
                    "created_at": string,"created_by": string | null,"description": string | null,"id": string,"name": string,"org_id": string,"priority": number,"request_id": string,"specification": NonNullable<Json>,"status": string
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string,"created_by"?: string | null,"description"?: string | null,"id"?: string,"name": string,"org_id": string,"priority"?: number,"request_id": string,"specification"?: NonNullable<Json>,"status"?: string
                  }
                  Update: {
                    "created_at"?: string,"created_by"?: string | null,"description"?: string | null,"id"?: string,"name"?: string,"org_id"?: string,"priority"?: number,"request_id"?: string,"specification"?: NonNullable<Json>,"status"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "workflows_org_id_fkey"
      columns: ["org_id"]
isOneToOne: false
      referencedRelation: "orgs"
      referencedColumns: ["id"]
    }
                  ]
                }
          }
          Views: {
            [_ in never]: never
          }
          Functions: {
            "activate_credit_grant":
{ Args: { "p_external_ref": string,"p_org_id": string,"p_source": string }; Returns: Json
                           },
"activate_scheduled_grants":
{ Args: { "p_batch_size"?: number }; Returns: number
                           },
"apply_charge_event":
{ Args: { "p_amount"?: number,"p_amount_refunded"?: number,"p_currency"?: string,"p_dispute_amount"?: number,"p_dispute_id"?: string,"p_dispute_status"?: string,"p_event_id": string,"p_event_type": string,"p_payment_intent_id": string }; Returns: Json
                           },
"apply_checkout_event":
{ Args: { "p_amount"?: number,"p_credits": number,"p_currency"?: string,"p_event_id": string,"p_event_type": string,"p_org_id": string,"p_outcome": string,"p_payment_intent_id"?: string,"p_session_id": string }; Returns: Json
                           },
"capture_credits":
{ Args: { "p_org_id": string,"p_quantity"?: number,"p_request_id": string,"p_result"?: Json }; Returns: Json
                           },
"claim_credit_alerts":
{ Args: { "p_limit"?: number }; Returns: {
              "attempts": number,"id": string,"org_id": string,"payload": Json,"secret": string,"url": string
            }[]
                           },
"claim_topup_requests":
{ Args: { "p_limit"?: number }; Returns: {
              "amount": number,"id": string,"org_id": string,"stripe_customer_id": string,"stripe_payment_method_id": string
            }[]
                           },
"complete_topup_request":
{ Args: { "p_error"?: string,"p_id": string,"p_payment_intent_id": string,"p_succeeded": boolean }; Returns: Json
                           },
"consume_credits":
{ Args: { "p_metadata"?: Json,"p_operation": string,"p_org_id"?: string,"p_quantity"?: number,"p_request_id": string }; Returns: Json
                           },
"consume_credits_batch":
{ Args: { "p_atomic"?: boolean,"p_items": Json,"p_org_id"?: string }; Returns: Json
                           },
"create_workflow":
{ Args: { "p_description"?: string,"p_name": string,"p_org_id"?: string,"p_priority"?: number,"p_request_id"?: string,"p_specification"?: Json }; Returns: Json
                           },
"execute_workflow":
{ Args: { "p_input"?: Json,"p_request_id"?: string,"p_workflow_id": string }; Returns: Json
                           },
"expire_credit_grants":
{ Args: { "p_batch_size"?: number }; Returns: number
                           },
"expire_stale_holds":
{ Args: { "p_batch_size"?: number }; Returns: number
                           },
"get_alert_webhook":
{ Args: { "p_org_id"?: string }; Returns: Json
                           },
"get_auto_topup":
{ Args: { "p_org_id"?: string }; Returns: Json
                           },
"get_credit_balance":
{ Args: { "p_org_id"?: string }; Returns: Json
                           },
"get_daily_usage":
{ Args: { "p_days"?: number,"p_org_id"?: string }; Returns: Json
                           },
"get_usage_stats":
{ Args: { "p_days"?: number,"p_org_id"?: string }; Returns: Json
                           },
"grant_credits":
{ Args: { "p_amount": number,"p_effective_at"?: string,"p_expires_at"?: string,"p_external_ref"?: string,"p_metadata"?: Json,"p_operations"?: (string)[],"p_org_id": string,"p_pending"?: boolean,"p_priority"?: number,"p_source": string }; Returns: Json
                           },
"grant_onboarding_credits":
{ Args: { "p_amount": number,"p_expires_at"?: string,"p_user_id": string }; Returns: Json
                           },
"list_my_orgs":
{ Args: Record<PropertyKey, never>; Returns: {
              "has_usage_credits": boolean,"is_personal": boolean,"name": string,"org_id": string,"role": string
            }[]
                           },
"mark_topup_request":
{ Args: { "p_error"?: string,"p_id": string,"p_payment_intent_id"?: string,"p_status": string }; Returns: Json
                           },
"pin_device_channel":
{ Args: { "p_app_id": string,"p_channel": string,"p_device_id": string }; Returns: Json
                           },
"reconcile_credits":
{ Args: Record<PropertyKey, never>; Returns: number
                           },
"record_credit_alert_delivery":
{ Args: { "p_delivered": boolean,"p_error"?: string,"p_id": string,"p_status_code"?: number }; Returns: string
                           },
"record_payment_exception":
{ Args: { "p_detail"?: Json,"p_event_id": string,"p_event_type": string,"p_object_id": string,"p_org_id"?: string,"p_reason": string }; Returns: Json
                           },
"refresh_orgs_has_usage_credits":
{ Args: { "p_batch_size"?: number }; Returns: number
                           },
"refund_credits":
{ Args: { "p_org_id": string,"p_reason": string,"p_request_id": string }; Returns: Json
                           },
"release_credits":
{ Args: { "p_backend_error"?: boolean,"p_org_id": string,"p_request_id": string,"p_result"?: Json }; Returns: Json
                           },
"reserve_credits":
{ Args: { "p_metadata"?: Json,"p_operation": string,"p_org_id": string,"p_quantity"?: number,"p_request_id": string,"p_ttl_seconds"?: number,"p_user_id": string }; Returns: Json
                           },
"reserve_meter_request":
{ Args: { "p_fingerprint": string,"p_operation": string,"p_org_id": string,"p_quantity": number,"p_request_id": string,"p_ttl_seconds": number,"p_user_id": string }; Returns: Json
                           },
"resolve_payment_exception":
{ Args: { "p_id": number,"p_resolution": string }; Returns: Json
                           },
"revoke_credits":
{ Args: { "p_amount": number,"p_external_ref": string,"p_grant_id"?: string,"p_org_id": string,"p_reason": string }; Returns: Json
                           },
"roll_up_credit_usage":
{ Args: { "p_batch_size"?: number,"p_wait_ms"?: number }; Returns: number
                           },
"set_alert_webhook":
{ Args: { "p_org_id"?: string,"p_url": string }; Returns: Json
                           },
"set_auto_topup":
{ Args: { "p_amount": number,"p_enabled": boolean,"p_monthly_cap": number,"p_org_id"?: string,"p_threshold": number }; Returns: Json
                           },
"set_meter_backend":
{ Args: { "p_enabled"?: boolean,"p_operation": string,"p_timeout_ms"?: number,"p_url": string }; Returns: Json
                           },
"set_org_billing":
{ Args: { "p_org_id": string,"p_stripe_customer_id": string,"p_stripe_payment_method_id"?: string }; Returns: undefined
                           },
"set_overage_limit":
{ Args: { "p_limit": number,"p_org_id": string }; Returns: Json
                           },
"settle_meter_request":
{ Args: { "p_body": string,"p_capture": boolean,"p_content_type": string,"p_org_id": string,"p_request_id": string,"p_result": Json,"p_status": number }; Returns: Json
                           },
"void_credit_grant":
{ Args: { "p_external_ref": string,"p_org_id": string,"p_source": string }; Returns: Json
                           }
          }
          Enums: {
            [_ in never]: never
          }
          CompositeTypes: {
            [_ in never]: never
          }
        }
}

type DatabaseWithoutInternals = Omit<Database, '__InternalSupabase'>

type DefaultSchema = DatabaseWithoutInternals[Extract<keyof Database, "public">]

export type Tables<
  DefaultSchemaTableNameOrOptions extends
    | keyof (DefaultSchema["Tables"] & DefaultSchema["Views"])
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof (DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"] &
        DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Views"])
    : never = never
> = DefaultSchemaTableNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? (DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"] &
      DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Views"])[TableName] extends {
      Row: infer R
    }
    ? R
    : never
  : DefaultSchemaTableNameOrOptions extends keyof (DefaultSchema["Tables"] & DefaultSchema["Views"])
  ? (DefaultSchema["Tables"] & DefaultSchema["Views"])[DefaultSchemaTableNameOrOptions] extends {
      Row: infer R
    }
    ? R
    : never
  : never

export type TablesInsert<
  DefaultSchemaTableNameOrOptions extends
    | keyof DefaultSchema["Tables"]
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"]
    : never = never
> = DefaultSchemaTableNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"][TableName] extends {
      Insert: infer I
    }
    ? I
    : never
  : DefaultSchemaTableNameOrOptions extends keyof DefaultSchema["Tables"]
  ? DefaultSchema["Tables"][DefaultSchemaTableNameOrOptions] extends {
      Insert: infer I
    }
    ? I
    : never
  : never

export type TablesUpdate<
  DefaultSchemaTableNameOrOptions extends
    | keyof DefaultSchema["Tables"]
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"]
    : never = never
> = DefaultSchemaTableNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"][TableName] extends {
      Update: infer U
    }
    ? U
    : never
  : DefaultSchemaTableNameOrOptions extends keyof DefaultSchema["Tables"]
  ? DefaultSchema["Tables"][DefaultSchemaTableNameOrOptions] extends {
      Update: infer U
    }
    ? U
    : never
  : never

export type Enums<
  DefaultSchemaEnumNameOrOptions extends
    | keyof DefaultSchema["Enums"]
    | { schema: keyof DatabaseWithoutInternals },
  EnumName extends DefaultSchemaEnumNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaEnumNameOrOptions["schema"]]["Enums"]
    : never = never
> = DefaultSchemaEnumNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[DefaultSchemaEnumNameOrOptions["schema"]]["Enums"][EnumName]
  : DefaultSchemaEnumNameOrOptions extends keyof DefaultSchema["Enums"]
  ? DefaultSchema["Enums"][DefaultSchemaEnumNameOrOptions]
  : never

export type CompositeTypes<
  PublicCompositeTypeNameOrOptions extends
    | keyof DefaultSchema["CompositeTypes"]
    | { schema: keyof DatabaseWithoutInternals },
  CompositeTypeName extends PublicCompositeTypeNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[PublicCompositeTypeNameOrOptions["schema"]]["CompositeTypes"]
    : never = never
> = PublicCompositeTypeNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[PublicCompositeTypeNameOrOptions["schema"]]["CompositeTypes"][CompositeTypeName]
  : PublicCompositeTypeNameOrOptions extends keyof DefaultSchema["CompositeTypes"]
  ? DefaultSchema["CompositeTypes"][PublicCompositeTypeNameOrOptions]
  : never

export const Constants = {
  "public": {
          Enums: {
            
          }
        }
} as const
