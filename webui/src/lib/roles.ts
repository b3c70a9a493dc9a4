// What each role may do, mirroring the access table of the API (control/src/api/routes.rs).
// Only used to hide controls a role cannot use; the API enforces every call regardless.
import type { Role } from './api/types';

export type Capability = 'write-policy' | 'rollback' | 'confirm' | 'audit' | 'admin' | 'triage';

const CAN: Record<Capability, Role[]> = {
  'write-policy': ['policy-author', 'admin'],
  rollback: ['operator', 'approver', 'admin'],
  confirm: ['approver', 'admin'],
  audit: ['auditor', 'admin'],
  admin: ['admin'],
  triage: ['operator', 'policy-author', 'approver', 'admin'],
};

export function can(role: Role | null | undefined, what: Capability): boolean {
  return !!role && CAN[what].includes(role);
}

export interface NavItem {
  id: string;
  label: string;
  needs?: Capability;
}

export const NAV: NavItem[] = [
  { id: 'dashboard', label: 'Dashboard' },
  { id: 'map', label: 'Zone map' },
  { id: 'flows', label: 'Flows' },
  { id: 'policy', label: 'Policy' },
  { id: 'audit', label: 'Audit', needs: 'audit' },
  { id: 'anomalies', label: 'Anomalies' },
];

export function navFor(role: Role | null | undefined): NavItem[] {
  return NAV.filter((n) => !n.needs || can(role, n.needs));
}
