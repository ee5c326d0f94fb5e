package access

import (
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
)

// APIPolicy is the one table that decides every procedure of the user-facing API. A handler may narrow
// further what a caller sees (a team user sees only their own instances) but never widens it.
var APIPolicy = Policy{
	apiv1connect.AccountServiceLoginProcedure:          Public,
	apiv1connect.AccountServiceLogoutProcedure:         SignedIn,
	apiv1connect.AccountServiceGetCurrentUserProcedure: SignedIn,
	apiv1connect.AccountServiceChangePasswordProcedure: SignedIn,
	apiv1connect.AccountServiceCreateApiTokenProcedure: SignedIn,
	apiv1connect.AccountServiceListApiTokensProcedure:  SignedIn,
	apiv1connect.AccountServiceRevokeApiTokenProcedure: SignedIn,

	apiv1connect.UserServiceCreateUserProcedure:    GlobalAdmin,
	apiv1connect.UserServiceListUsersProcedure:     GlobalAdmin,
	apiv1connect.UserServiceSetGlobalRoleProcedure: GlobalAdmin,

	apiv1connect.TeamServiceCreateTeamProcedure:        SignedIn,
	apiv1connect.TeamServiceListTeamsProcedure:         SignedIn,
	apiv1connect.TeamServiceGetTeamProcedure:           TeamMember,
	apiv1connect.TeamServiceGetTeamEndpointProcedure:   TeamMember,
	apiv1connect.TeamServiceListMembersProcedure:       TeamAdmin,
	apiv1connect.TeamServiceRemoveMemberProcedure:      TeamAdmin,
	apiv1connect.TeamServiceSetMemberRoleProcedure:     TeamAdmin,
	apiv1connect.TeamServiceTransferOwnershipProcedure: TeamAdmin,
	apiv1connect.TeamServiceSetTeamToolsModeProcedure:  TeamAdmin,
	// Whether global satellites stand in for the team's own is the team's choice; R is the operators'.
	apiv1connect.TeamServiceSetTeamGlobalFallbackProcedure: TeamAdmin,
	// Each member chooses for themselves only: the handler sets the caller's own membership.
	apiv1connect.TeamServiceSetMyToolsModeProcedure: TeamMember,
	// A team's admins invite and manage its invitations; an invitation's addressee, who is not a member
	// yet, answers it: the handler finds it by the caller's own email, never by a team.
	apiv1connect.TeamServiceInviteMemberProcedure:      TeamAdmin,
	apiv1connect.TeamServiceListInvitationsProcedure:   TeamAdmin,
	apiv1connect.TeamServiceRevokeInvitationProcedure:  TeamAdmin,
	apiv1connect.TeamServiceListMyInvitationsProcedure: SignedIn,
	apiv1connect.TeamServiceAcceptInvitationProcedure:  SignedIn,
	apiv1connect.TeamServiceDeclineInvitationProcedure: SignedIn,

	apiv1connect.AuditServiceListAuditEventsProcedure: TeamAdminOrGlobalAdmin,

	apiv1connect.OAuthServiceCreateOAuthClientProcedure:    TeamAdmin,
	apiv1connect.OAuthServiceListOAuthClientsProcedure:     TeamAdmin,
	apiv1connect.OAuthServiceRevokeOAuthClientProcedure:    TeamAdmin,
	apiv1connect.OAuthServiceListOAuthGrantsProcedure:      TeamAdmin,
	apiv1connect.OAuthServiceRevokeOAuthGrantProcedure:     TeamAdmin,
	apiv1connect.OAuthServiceListMyOAuthConsentsProcedure:  SignedIn,
	apiv1connect.OAuthServiceWithdrawOAuthConsentProcedure: SignedIn,
	apiv1connect.OAuthServiceRevokeMyOAuthGrantProcedure:   SignedIn,

	// Global templates are every signed-in user's to read and the global admins' to write; a team's own
	// templates are its members' to read and its admins' to write.
	apiv1connect.CatalogServiceCreateCatalogEntryProcedure: TeamAdminOrGlobalAdmin,
	apiv1connect.CatalogServiceUpdateCatalogEntryProcedure: TeamAdminOrGlobalAdmin,
	apiv1connect.CatalogServiceDeleteCatalogEntryProcedure: TeamAdminOrGlobalAdmin,
	apiv1connect.CatalogServiceImportServerJsonProcedure:   TeamAdminOrGlobalAdmin,
	apiv1connect.CatalogServiceGetCatalogEntryProcedure:    SignedInOrTeamMember,
	apiv1connect.CatalogServiceListCatalogEntriesProcedure: SignedInOrTeamMember,
	// A global template's health counts every team's instances, so only global admins read it.
	apiv1connect.CatalogServiceGetCatalogEntryHealthProcedure: TeamAdminOrGlobalAdmin,
	// Uploaded source archives belong to a team, for its own templates.
	apiv1connect.CatalogServiceUploadSourceArchiveProcedure: TeamAdmin,

	apiv1connect.InstallationServiceCreateInstallationProcedure:         TeamAdmin,
	apiv1connect.InstallationServiceUpdateInstallationProcedure:         TeamAdmin,
	apiv1connect.InstallationServiceDeleteInstallationProcedure:         TeamAdmin,
	apiv1connect.InstallationServiceUpdateInstallationSettingsProcedure: TeamAdmin,
	apiv1connect.InstallationServiceGetInstallationProcedure:            TeamMember,
	apiv1connect.InstallationServiceListInstallationsProcedure:          TeamMember,
	apiv1connect.InstallationServiceGetUserConfigurationProcedure:       TeamMember,
	apiv1connect.InstallationServiceSetUserConfigurationProcedure:       TeamMember,
	// Each member connects and disconnects only their own account at an installation's remote server.
	apiv1connect.RemoteAccountServiceConnectRemoteAccountProcedure:    TeamMember,
	apiv1connect.RemoteAccountServiceGetRemoteAccountProcedure:        TeamMember,
	apiv1connect.RemoteAccountServiceDisconnectRemoteAccountProcedure: TeamMember,
	// Admins see who has yet to connect, never anyone's tokens.
	apiv1connect.RemoteAccountServiceListRemoteAccountsProcedure: TeamAdmin,

	apiv1connect.SecretServiceRotateSecretsProcedure: GlobalAdmin,

	// A team user lists the tools of their own instance, a team admin every member's: the handler narrows.
	// Each member hides tools for themselves; only admins choose the team's tools.
	apiv1connect.ToolServiceListToolsProcedure:        TeamMember,
	apiv1connect.ToolServiceGetToolSelectionProcedure: TeamMember,
	apiv1connect.ToolServiceSetToolSelectionProcedure: TeamAdmin,
	apiv1connect.ToolServiceSetHiddenToolsProcedure:   TeamMember,

	// Histories are read by the team's members (a member's own configuration; the handler narrows), and
	// a global template's by global admins only: without a team_id the handler requires one.
	apiv1connect.ConfigHistoryServiceListConfigVersionsProcedure:    SignedInOrTeamMember,
	apiv1connect.ConfigHistoryServiceCompareConfigVersionsProcedure: SignedInOrTeamMember,
	apiv1connect.ConfigHistoryServiceRollbackInstallationProcedure:  TeamAdmin,

	// A team's admins stop their own installations; a template stop reaches every team, so only global
	// admins make or lift one.
	apiv1connect.EmergencyStopServiceStopInstallationProcedure:   TeamAdmin,
	apiv1connect.EmergencyStopServiceResumeInstallationProcedure: TeamAdmin,
	apiv1connect.EmergencyStopServiceStopTemplateProcedure:       GlobalAdmin,
	apiv1connect.EmergencyStopServiceResumeTemplateProcedure:     GlobalAdmin,

	// Team users see their own instances, team admins the whole team's: the handler narrows.
	apiv1connect.InstanceServiceListInstancesProcedure:       TeamMember,
	apiv1connect.InstanceServiceGetInstanceStatusProcedure:   TeamMember,
	apiv1connect.InstanceServiceListServerLogsProcedure:      TeamMember,
	apiv1connect.InstanceServiceListRequestLogsProcedure:     TeamMember,
	apiv1connect.InstanceServiceGetRequestLogProcedure:       TeamMember,
	apiv1connect.InstanceServiceWatchInstanceStatusProcedure: TeamMember,
	apiv1connect.InstanceServiceStreamServerLogsProcedure:    TeamMember,
	apiv1connect.InstanceServiceStreamRequestLogsProcedure:   TeamMember,
	// Likewise a team user restarts only their own instance, a team admin any of the team's.
	apiv1connect.InstanceServiceRestartInstanceProcedure: TeamMember,

	// Team users see their own usage, team admins the whole team's: the handler narrows.
	apiv1connect.UsageServiceGetUsageSeriesProcedure: TeamMember,
	apiv1connect.UsageServiceListTopToolsProcedure:   TeamMember,
	apiv1connect.UsageServiceListTopUsersProcedure:   TeamMember,

	// Global policies are the global admins'; a team's policies are its admins'.
	apiv1connect.PolicyServiceListPoliciesProcedure: TeamAdminOrGlobalAdmin,
	apiv1connect.PolicyServiceSetPolicyProcedure:    TeamAdminOrGlobalAdmin,
	apiv1connect.PolicyServiceDeletePolicyProcedure: TeamAdminOrGlobalAdmin,
	// A team's webhooks and their deliveries are its admins'; global webhooks (no team_id), which hear every
	// team, are the global admins'.
	apiv1connect.AlertServiceCreateWebhookProcedure:         TeamAdminOrGlobalAdmin,
	apiv1connect.AlertServiceListWebhooksProcedure:          TeamAdminOrGlobalAdmin,
	apiv1connect.AlertServiceGetWebhookProcedure:            TeamAdminOrGlobalAdmin,
	apiv1connect.AlertServiceDeleteWebhookProcedure:         TeamAdminOrGlobalAdmin,
	apiv1connect.AlertServiceSendTestEventProcedure:         TeamAdminOrGlobalAdmin,
	apiv1connect.AlertServiceListWebhookDeliveriesProcedure: TeamAdminOrGlobalAdmin,
	// Who can reach what, and when they last did, is for the team's admins.
	apiv1connect.AccessReviewServiceGetAccessReviewProcedure:    TeamAdmin,
	apiv1connect.AccessReviewServiceExportAccessReviewProcedure: TeamAdmin,

	// Global satellites are the global admins'; a team's satellites and registration tokens are its admins'.
	adminv1connect.AdminServiceCreateRegistrationTokenProcedure: TeamAdminOrGlobalAdmin,
	adminv1connect.AdminServiceListRegistrationTokensProcedure:  TeamAdminOrGlobalAdmin,
	adminv1connect.AdminServiceRevokeRegistrationTokenProcedure: TeamAdminOrGlobalAdmin,
	adminv1connect.AdminServiceListSatellitesProcedure:          TeamAdminOrGlobalAdmin,
	adminv1connect.AdminServiceRevokeSatelliteProcedure:         TeamAdminOrGlobalAdmin,
	adminv1connect.AdminServiceListSatelliteHeartbeatsProcedure: TeamAdminOrGlobalAdmin,
	adminv1connect.AdminServiceListSatelliteProcessesProcedure:  TeamAdminOrGlobalAdmin,
	adminv1connect.AdminServiceListDroppedEventReportsProcedure: TeamAdminOrGlobalAdmin,
	adminv1connect.AdminServiceEnqueueCommandProcedure:          GlobalAdmin,
	adminv1connect.AdminServiceListCommandsProcedure:            GlobalAdmin,
	// Releases run on every satellite, global ones included: only global admins publish them.
	adminv1connect.AdminServiceCreateSatelliteReleaseProcedure:      GlobalAdmin,
	adminv1connect.AdminServiceUploadSatelliteReleaseChunkProcedure: GlobalAdmin,
	adminv1connect.AdminServiceCompleteSatelliteReleaseProcedure:    GlobalAdmin,
	adminv1connect.AdminServiceListSatelliteReleasesProcedure:       GlobalAdmin,
	adminv1connect.AdminServiceDeleteSatelliteReleaseProcedure:      GlobalAdmin,
	adminv1connect.AdminServiceListRolloutsProcedure:                GlobalAdmin,
	// Placement spans every team's use of the global satellites: the global admins'.
	adminv1connect.AdminServiceListPlacementsProcedure:   GlobalAdmin,
	adminv1connect.AdminServiceSetTeamReplicasProcedure:  GlobalAdmin,
	adminv1connect.AdminServiceDrainSatelliteProcedure:   GlobalAdmin,
	adminv1connect.AdminServiceUndrainSatelliteProcedure: GlobalAdmin,

	adminv1connect.SingleSignOnServiceCreateIdentityProviderProcedure:            GlobalAdmin,
	adminv1connect.SingleSignOnServiceListIdentityProvidersProcedure:             GlobalAdmin,
	adminv1connect.SingleSignOnServiceDeleteIdentityProviderProcedure:            GlobalAdmin,
	adminv1connect.SingleSignOnServiceCreateGroupRuleProcedure:                   GlobalAdmin,
	adminv1connect.SingleSignOnServiceListGroupRulesProcedure:                    GlobalAdmin,
	adminv1connect.SingleSignOnServiceDeleteGroupRuleProcedure:                   GlobalAdmin,
	adminv1connect.SingleSignOnServiceSetPasswordSignInProcedure:                 GlobalAdmin,
	adminv1connect.SingleSignOnServiceListPasswordSignInDisabledDomainsProcedure: GlobalAdmin,
	// The sign-in page shows the providers before anyone has signed in.
	adminv1connect.SingleSignOnServiceListSignInOptionsProcedure: Public,
}
