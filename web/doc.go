// Package web will hold the portal for citizens, officers and security
// officers (Vietnamese first, English second): embedded templates and assets
// served by khod.
package web
