// Who is signed in: the current user and their memberships, shared by every page.
import { useQuery } from "@connectrpc/connect-query";
import { createContext, useContext } from "react";
import { AccountService, GlobalRole, type GetCurrentUserResponse } from "./gen/orrery/api/v1/account_pb";

export const SessionContext = createContext<GetCurrentUserResponse | null>(null);

export function useSession(): GetCurrentUserResponse {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside a signed-in page");
  return s;
}

export function useIsGlobalAdmin(): boolean {
  return useSession().user?.globalRole === GlobalRole.ADMIN;
}

export function useCurrentUser() {
  return useQuery(AccountService.method.getCurrentUser, {}, { retry: false, staleTime: 30_000 });
}
