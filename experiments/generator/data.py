"""Embedded word lists, popular domains and TLD inventories the generator draws from."""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Ordered roughly by how often an enterprise resolver sees them (rank drives the Zipf weight).
GLOBAL_POPULAR = _words("""
google.com microsoft.com googleapis.com apple.com gstatic.com windowsupdate.com live.com
office.com icloud.com microsoftonline.com facebook.com office365.com amazonaws.com youtube.com
akamaihd.net windows.com msn.com cloudflare.com bing.com instagram.com whatsapp.net
ytimg.com linkedin.com skype.com fbcdn.net apple-dns.net aaplimg.com mzstatic.com
outlook.com sharepoint.com amazon.com netflix.com nflxvideo.net spotify.com slack.com zoom.us
github.com githubusercontent.com wikipedia.org yahoo.com reddit.com twitter.com twimg.com
tiktokcdn.com tiktokv.com adobe.com dropbox.com salesforce.com okta.com digicert.com
letsencrypt.org mozilla.org firefox.com cloudflare-dns.com pinterest.com paypal.com ebay.com
booking.com wordpress.com shopify.com zendesk.com atlassian.net atlassian.com gitlab.com
npmjs.org pypi.org docker.io docker.com ubuntu.com debian.org canonical.com xboxlive.com
nvidia.com intel.com dell.com lenovo.com samsung.com sentry.io datadoghq.com newrelic.com
nr-data.net segment.io hubspot.com onedrive.com gvt1.com gvt2.com ggpht.com
googleusercontent.com doubleclick.net googletagmanager.com google-analytics.com
jsdelivr.net unpkg.com cdnjs.com bootstrapcdn.com fontawesome.com typekit.net
grammarly.com notion.so figma.com miro.com webex.com teamviewer.com anydesk.com
crowdstrike.com sophos.com kaspersky.com eset.com avast.com mcafee.com symantec.com
""")

REGIONAL_POPULAR: dict[str, tuple[str, ...]] = {
    "en": _words(
        "cnn.com bbc.co.uk nytimes.com theguardian.com espn.com weather.com imdb.com "
        "walmart.com target.com chase.com wellsfargo.com craigslist.org indeed.com"
    ),
    "de": _words(
        "spiegel.de bild.de web.de gmx.net t-online.de heise.de zalando.de otto.de "
        "sparkasse.de kleinanzeigen.de chip.de faz.net zeit.de tagesschau.de dhl.de"
    ),
    "es": _words(
        "elpais.com marca.com as.com rtve.es elmundo.es mercadolibre.com.mx "
        "mercadolibre.com.ar clarin.com infobae.com milanuncios.com elcorteingles.es"
    ),
    "id": _words(
        "tokopedia.com shopee.co.id detik.com kompas.com bukalapak.com tribunnews.com "
        "liputan6.com okezone.com traveloka.com gojek.com blibli.com"
    ),
    "tr": _words(
        "trendyol.com hepsiburada.com sahibinden.com hurriyet.com.tr milliyet.com.tr "
        "sabah.com.tr n11.com turkcell.com.tr ensonhaber.com eksisozluk.com"
    ),
    "pl": _words(
        "allegro.pl onet.pl wp.pl interia.pl olx.pl gazeta.pl pudelek.pl "
        "mbank.pl pkobp.pl otodom.pl ceneo.pl"
    ),
    "zh": _words(
        "baidu.com qq.com 163.com taobao.com alicdn.com jd.com bilibili.com 360.cn "
        "sohu.com sina.com.cn weibo.com tmall.com aliyun.com xiaohongshu.com zhihu.com"
    ),
    "ru": _words(
        "yandex.ru vk.com ok.ru mail.ru avito.ru rambler.ru ria.ru sberbank.ru "
        "gosuslugi.ru wildberries.ru ozon.ru kinopoisk.ru"
    ),
}

SHORT_BRANDS = _words("""
t.co bit.ly x.com g.co fb.me wa.me ow.ly vk.com ok.ru qq.com 163.com 126.com jd.com 58.com
360.cn hao123.com 4399.com b23.tv dw.com hm.com sap.com ibm.com hp.com lg.com 3m.com ea.com
ups.com ing.nl o2.pl wp.pl db.com bt.com ft.com ap.org mi.com vivo.com 7-zip.org 9gag.com
""")

HOST_PREFIXES = _words("""
www api m static cdn login accounts mail edge img assets auth app clients4 update s
play support docs news shop video secure portal my sso media files download
""")

EN_WORDS = _words("""
apple river stone light cloud green house garden water paper market silver forest bright
north south royal simple smart quick happy sunny ocean island mountain valley blue red
black white golden star moon planet data net link web site online digital media
travel home family health care life style food fresh kitchen coffee table chair window
door street city town bridge tower park field farm horse tiger eagle wolf bear lion
fox bird fish shark dragon rocket engine power energy solar wind fire ice snow rain
storm thunder spring summer autumn winter morning evening night day time world global
first best prime pro plus max tech soft labs works group team club zone hub point
central direct express secure trust bank money pay shop store deal sale price gift
book news press radio music sound video photo film game play sport fit yoga school
learn study class mind idea plan build craft design art color paint print pixel code
open free real true pure clear deep wide long fast easy ready smart lucky magic
""")

DE_WORDS = _words("""
wetter zeitung bahn haus garten auto kinder schule stadt land markt arzt praxis bau
handwerk technik reisen urlaub sonne berg wald see fluss tier hund katze essen brot
kuchen bier wein sport verein freunde heimat welt bund recht steuer versicherung
immobilien wohnung zimmer laden kaufen preis angebot nachrichten kirche gemeinde
""")

ES_WORDS = _words("""
casa ciudad mundo vida amigo salud noticias tienda comida viaje playa sol luna
tierra agua fuego libro escuela trabajo dinero banco mercado precio oferta coche
perro gato familia hogar jardin deporte futbol musica radio cine arte fiesta
barrio pueblo cocina sabor fresco rapido nuevo grande bueno mejor
""")

ID_WORDS = _words("""
rumah kota dunia berita toko makan minum jalan sehat belajar sekolah kerja uang
bank pasar harga murah baru besar kecil cepat mudah indah bunga laut gunung
pulau air api tanah hujan matahari bulan bintang anak keluarga teman olahraga
""")

TR_WORDS = _words("""
ev sehir dunya haber magaza yemek su ates toprak kitap okul is para banka
pazar fiyat ucuz yeni buyuk kucuk hizli kolay guzel cicek deniz dag ada gunes
ay yildiz cocuk aile arkadas spor oyun muzik film sanat mutfak bahce araba
""")

PL_WORDS = _words("""
dom miasto swiat wiadomosci sklep jedzenie woda ogien ziemia ksiazka szkola praca
pieniadze bank rynek cena tani nowy duzy maly szybki latwy piekny kwiat morze
gora wyspa slonce ksiezyc gwiazda dziecko rodzina przyjaciel sport gra muzyka
""")

RU_WORDS = _words("""
dom gorod mir novosti magazin eda voda ogon zemlya kniga shkola rabota dengi
bank rynok tsena deshevo novyi bolshoi malenkiy bystro legko krasivo tsvetok
more gora ostrov solntse luna zvezda deti semya drug sport igra muzyka kino
""")

PINYIN = _words("""
zhong guo bei jing shang hai wang luo xin hua tian xia ren min jia yuan bao
tao ali ba kuai le you xi dian ying shi pin yun fu wu lian tong yi dong
chang an kai feng hang zhou nan guang shen zhen cheng du xi men qing dao
da xue sheng huo mei li jin rong hao zi xun ke ji
""")

LANG_WORDS: dict[str, tuple[str, ...]] = {
    "en": EN_WORDS,
    "de": DE_WORDS,
    "es": ES_WORDS,
    "id": ID_WORDS,
    "tr": TR_WORDS,
    "pl": PL_WORDS,
    "ru": RU_WORDS,
    "zh": PINYIN,
}

LANG_TLDS: dict[str, tuple[str, ...]] = {
    "en": _words(
        "com com com com com net org io co co.uk us info xyz online site top biz me tv cc club"
    ),
    "de": _words("de de de com at ch net eu"),
    "es": _words("es com com.mx mx com.ar cl co com.co"),
    "id": _words("co.id id com web.id or.id net"),
    "tr": _words("com.tr com.tr com net.tr org.tr tr"),
    "pl": _words("pl pl com.pl com net.pl eu"),
    "ru": _words("ru ru com su net org"),
    "zh": _words("cn com.cn com net cn net.cn"),
}

# Unicode words that real sites register as internationalised domain names.
IDN_WORDS: dict[str, tuple[str, ...]] = {
    "de": _words("müller bäckerei schön grün märkte übersetzung möbel bücher küche fußball"),
    "es": _words("españa niño señor cañón años diseño montaña compañía pequeño mañana"),
    "tr": _words("güzel çiçek şehir ışık öğrenci türkçe ağaç güneş çocuk müzik"),
    "pl": _words("łódź żółw księgarnia świat zdjęcia pożyczki sklepżywności ręcznik"),
    "zh": _words("中国 北京 网络 商城 公司 上海 新闻 手机 购物 游戏"),
    "ru": _words("пример москва магазин новости книги работа такси погода"),
    "en": _words("café résumé naïve jalapeño"),
    "id": _words("kafé"),
}

IDN_TLDS: dict[str, tuple[str, ...]] = {
    "de": ("de", "com", "at"),
    "es": ("es", "com"),
    "tr": ("com.tr", "tr"),
    "pl": ("pl", "com"),
    "zh": ("cn", "中国", "com"),
    "ru": ("рф", "ru"),
    "en": ("com",),
    "id": ("com",),
}

AD_HOSTS = _words("""
securepubads.g.doubleclick.net pagead2.googlesyndication.com tpc.googlesyndication.com
stats.g.doubleclick.net cm.g.doubleclick.net ad.doubleclick.net googleads.g.doubleclick.net
ib.adnxs.com acdn.adnxs.com secure.adnxs.com static.criteo.net gum.criteo.com
bidder.criteo.com cdn.taboola.com trc.taboola.com widgets.outbrain.com log.outbrainimg.com
fastlane.rubiconproject.com pixel.rubiconproject.com hbopenbid.pubmatic.com ads.pubmatic.com
sb.scorecardresearch.com bat.bing.com connect.facebook.net c.amazon-adsystem.com
aax.amazon-adsystem.com match.adsrvr.org insight.adsrvr.org js.adsrvr.org
u.openx.net rtb.openx.net as.casalemedia.com dsum-sec.casalemedia.com
z.moatads.com px.moatads.com s.yimg.com sync.teads.tv cdn.teads.tv ads.yieldmo.com
c.bing.com px.ads.linkedin.com analytics.tiktok.com ct.pinterest.com
cdn.mxpnl.com api-js.mixpanel.com cdn.segment.com api.segment.io js.hs-analytics.net
""")

CONSONANTS = "bcdfghjklmnprstvwxz"
VOWELS = "aeiouy"

DGA_TLDS_MANY = _words("""
ru cc pw tk ws in me su kz co io biz info xyz top online site club eu cn net com org
""")
