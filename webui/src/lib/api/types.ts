// Types of the API, from the generated OpenAPI types (schema.d.ts). Every response is typed in
// the OpenAPI document; `PolicyDoc` below is the console's partial view of the generated
// `PolicyDocument` (every field optional, so drafts and test fixtures can leave parts out).
import type { components } from './schema';

type S = components['schemas'];
export type Role = S['Role'];
export type Problem = S['Problem'];
export type FieldError = S['FieldError'];
export type LoginResponse = S['LoginResponse'];
export type Me = S['Me'];
export type PolicyView = S['PolicyView'];
export type PendingView = S['PendingView'];
export type RevisionView = S['RevisionView'];
export type RevisionPage = S['RevisionPage'];
export type RevisionDetail = S['RevisionDetail'];
export type RevisionSourceView = S['RevisionSourceView'];
export type WriteResult = S['WriteResult'];
export type CommitRequest = S['CommitRequest'];
export type StageRequest = S['StageRequest'];
export type RollbackRequest = S['RollbackRequest'];
export type ConfirmRequest = S['ConfirmRequest'];
export type DecideRequest = S['DecideRequest'];
export type ImpactRequest = S['ImpactRequest'];
export type FlowSpec = S['FlowSpec'];
export type FlowRecord = S['FlowRecord'];
export type FlowPage = S['FlowPage'];
export type CountersSnapshot = S['CountersSnapshot'];
export type PortCounters = S['PortCounters'];
export type DropCount = S['DropCount'];
export type DiffView = S['DiffView'];
export type VerifyResult = S['VerifyResult'];
export type RecordPage = S['RecordPage'];
export type Readiness = S['Readiness'];
export type Anomaly = S['Anomaly'];
export type AnomalyPage = S['AnomalyPage'];
export type AnomalyState = S['AnomalyState'];
export type UsageView = S['UsageView'];
export type ClauseHits = S['ClauseHits'];
export type ValidateResult = S['ValidateResult'];
export type Permissions = S['Permissions'];
export type RecommendationSummary = S['RecommendationSummary'];
export type RecommendationDetail = S['RecommendationDetail'];
export type LearnStatus = S['LearnStatus'];
export type HealthReport = S['HealthReport'];
export type WorkerHealth = S['WorkerHealth'];
export type FlowTableHealth = S['FlowTableHealth'];
export type RouterHealth = S['RouterHealth'];
export type InferenceHealth = S['InferenceHealth'];
export type ModelInfo = S['ModelInfo'];

export type Explanation = S['Explanation'];
export type Clause = S['Clause'];
export type ImpactItem = S['ImpactItem'];

export type AuditRecord = S['AuditRecord'];
export type PolicyDocument = S['PolicyDocument'];
export type PolicyDiff = S['PolicyDiff'];

/** The policy document (canonical JSON of a revision), the parts the console reads. */
export interface PolicyDoc {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; description?: string; labels?: Record<string, string> };
  spec?: {
    defaults?: { action?: string; mode?: string };
    ipSets?: { name: string; addresses?: string[] }[];
    endpoints?: { name: string; address: string; labels?: Record<string, string> }[];
    zones?: Zone[];
    conduits?: Conduit[];
  };
}

export interface Zone {
  name: string;
  description?: string;
  mode?: string;
  subnets?: string[];
  ipSets?: string[];
  selector?: Selector;
}

export interface Selector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

export interface Conduit {
  name: string;
  description?: string;
  action?: string;
  mode?: string;
  from: string[];
  to: string[];
  services: { proto: string; ports?: (number | string)[]; icmpTypes?: number[]; l7?: unknown }[];
}
