// Who is signed in (from /auth/login or /auth/me), shared by every page.
import type { Role } from './api/types';

export const session = $state<{ user: string | null; role: Role | null; checked: boolean; expired: boolean }>({
  user: null,
  role: null,
  checked: false,
  expired: false,
});
