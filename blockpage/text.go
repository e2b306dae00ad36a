package blockpage

import (
	_ "embed"
	"html/template"
)

// Text holds the page's words in one language.
type Text struct {
	Title       string // the window title and heading for a blocked site
	Intro       string // before the host name: "Access to"
	Blocked     string // after the host name: "is blocked."
	Why         string // lead-in of the table of reasons
	Platform    string
	Authority   string
	Order       string
	Contact     string
	Rule        string
	Time        string
	ContactNote string // how to use the contact
	Resolver    string // who enforces: "This block is enforced by the DNS resolver of"
	HTTPSNote   string // why HTTPS pages fail instead
	NotBlocked  string // heading for an unknown host
	NotBlockedP string // body for an unknown host
	Unknown     string // for an empty field
}

// texts are the built-in languages.
var texts = map[string]Text{
	"en": {
		Title:       "This site is blocked",
		Intro:       "Access to",
		Blocked:     "is blocked by order of the authority below.",
		Why:         "Why this site is blocked",
		Platform:    "Platform",
		Authority:   "Authority",
		Order:       "Order or case reference",
		Contact:     "Questions and appeals",
		Rule:        "List entry",
		Time:        "Time of this notice",
		ContactNote: "Please quote the order reference and the time of this notice.",
		Resolver:    "This block is enforced by the DNS resolver of",
		HTTPSNote:   "Secure (https://) addresses of blocked sites cannot show this notice: your browser reports a connection error instead.",
		NotBlocked:  "Nothing is blocked at this address",
		NotBlockedP: "This server only shows notices for blocked sites. The address you asked for is not on a blocking list.",
		Unknown:     "not given",
	},
	"zh-Hans": {
		Title:       "此网站已被封锁",
		Intro:       "对",
		Blocked:     "的访问已根据下列主管机关的命令被封锁。",
		Why:         "封锁原因",
		Platform:    "平台",
		Authority:   "主管机关",
		Order:       "命令或案件编号",
		Contact:     "咨询与申诉",
		Rule:        "名单条目",
		Time:        "本通知时间",
		ContactNote: "请注明命令编号和本通知的时间。",
		Resolver:    "本封锁由以下运营方的 DNS 解析服务执行：",
		HTTPSNote:   "被封锁网站的安全（https://）地址无法显示本通知，浏览器会显示连接错误。",
		NotBlocked:  "此地址未封锁任何内容",
		NotBlockedP: "本服务器仅显示被封锁网站的通知。您访问的地址不在封锁名单上。",
		Unknown:     "未提供",
	},
}

//go:embed page.html
var pageHTML string

// builtin is the page served unless Config.Template replaces it.
var builtin = template.Must(template.New("page.html").Parse(pageHTML))

// Builtin returns the text of the built-in template, a starting point for
// --block-page-template.
func Builtin() string { return pageHTML }
