"""Word lists and TLD mixes for the long tail of real registered domains.

Written by hand for the generator from general knowledge of languages and of the domain
market (which TLDs people register under, in which country); no list of real domains was
used. The words are common words, names and places: what small businesses, blogs, shops,
clubs and people name their sites after.
"""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    """Unique words in first-seen order (a word listed twice by accident counts once)."""
    return tuple(dict.fromkeys(text.split()))


EN_NOUNS = _words("""
account action address advice agency air airport album alarm alley angel animal answer apple
arena arm army arrow art article artist asset atlas audio author auto autumn avenue award baby
badge bag bakery ball balloon band bank bar barber barn base basket bath battery bay beach bean
bear beauty bed bee beer bell belt bench berry bike bill bird birthday biscuit blade blanket
block blog blood bloom board boat body bolt bone bonus book boot border bottle bowl box boy brain
branch brand bread breeze brick bride bridge brother brush bubble bucket budget buffalo builder
bull bunny bureau bus bush business butter button buyer cabin cable cafe cage cake calendar
camera camp campus canal candle candy canvas canyon cap capital captain car card care cargo
carpet cart case cash castle cat catalog cave cedar cell cellar center chain chair chalk champion
channel chapter charm chart chat cheese chef cherry chess chicken child chip chocolate choice
church cinema circle circus city clan class clay client cliff climate clinic clock closet cloth
cloud club coach coast coat code coffee coin collar college colony color comet comfort comic
comment company compass concept concert contact content contest control cook cookie copper copy
coral corner cottage cotton council counter country county couple courage course court cousin
cover cow crab craft crane crash cream credit crew cricket crop cross crowd crown crystal cube
culture cup cupcake curve customer cycle dad dairy daisy dance data dealer deck deer degree
delta dental depot desert design desk detail diamond diary diet digit dinner director disk
doctor dog doll dollar dolphin domain donkey door dove dragon drama dream dress drink driver drum
duck dune dust eagle earth east echo edge editor egg elephant elite energy engine entry estate
event exam expert fabric face factor factory fair faith falcon family fan farm fashion father
feather feed fence festival fiber field figure film finance finger fire fish fitness flag flame
flash fleet flight floor flora flower flute focus folk food foot force forest forge fork form
fortune forum fountain fox frame friend frog front frost fruit fuel fun fund furniture future
galaxy gallery game garage garden gate gear gem giant gift ginger girl glass globe glory glove
goal goat gold golf goose grace grain grape graph grass gravity green grill grocery ground group
grove guard guest guide guitar gym habit hair hall hammer hand harbor harvest hat hawk head
health heart heat hero hill history hobby holiday home honey hope horizon horse hospital host
hotel hour house hub hunter ice icon idea image impact inbox index ink insight island item
jacket jam jar jazz jet jewel job journal journey joy judge juice jungle junior kayak key kid
king kingdom kitchen kite kitten knight lab label ladder lady lake lamp land lane language
laser law lawn layer leader leaf league learning legend lemon lens lesson letter level library
life light lily lime line link lion list loan lobby lock lodge logic loop lotus love lunch
machine magazine magnet mail maker mall manager mango map maple marble market marsh mask master
match meadow meal media medal melody member memory menu mercy mesh metal meter method metro
mile milk mill mind mine mint mirror mission model moment money monkey monster month moon
morning mother motor mountain mouse movie mud museum music nail name nation nature navy neck
needle nest net network news night noble north note notice novel nurse nursery oak ocean office
oil olive onion opera option orange orbit orchard order organ origin outlet oven owl owner
oxygen pack package page paint palace palm panda panel paper parade park party pass pasta path
patient pattern peace peach peak pearl pen pencil people pepper pet phone photo piano picnic
picture pie pig pilot pine pink pipe pirate pixel pizza place plan planet plant plate play
plaza plum pocket poem poet point polar pole police pond pony pool port portal post pot potato
powder power press price pride prince print prize product profile project proof property pulse
pump puppy puzzle pyramid quality quarter queen quest quiz rabbit race radar radio rail rain
rainbow ranch range rate raven reader realm recipe record reef region rental report rescue
resort rest result review rhythm rice ride ring river road robot rock rocket roof room root
rope rose route royal rubber ruby rule runner saddle safari sail salad salon salt sand sauce
scale school science score scout screen sea seal season seed sense series service shadow shape
share shark sheep shelf shell shelter shield ship shirt shoe shop shore show side sign signal
silk silver singer sister site skill sky slice smile snack snake snow soap soccer society sock
sofa soil solar soldier song soul sound soup source south space spark speaker spice spider
spirit spoon sport spot spring square squad stable stadium staff stage stamp star station
steam steel step stick stock stone store storm story stream street studio style sugar suite
summer summit sun supply surf swan sweet table tail tale talent tank tape target task taste tax
taxi tea teacher team tech temple tennis tent terrace test theater theory thunder ticket tiger
tile timber time tin title toast token tomato tool tooth topic torch tour tower town toy track
trade trail train travel treasure tree trend tribe trip trophy truck trust truth tube tulip
tunnel turtle twin union unit universe valley value van vault vector velvet venture venue
verse vessel video view villa village vine vintage violet vision visit voice volt voyage wagon
walk wall wave wealth weather web wedding week well west whale wheat wheel wind window wine
wing winter wire wisdom wolf wood wool word work world writer yard year yoga youth zebra zone
""")

EN_VERBS = _words("""
ask bake bid book borrow build buy call camp care catch change chat check choose clean click
climb code cook count craft create cut dance deliver design discover dive draw dream drink
drive earn eat edit enjoy explore feed find fix fly follow gather get give glow go grow guide
help hike hire hold hunt invest join jump keep kick know launch learn lend let lift like listen
live load look love make meet mix move need open order own paint park pay pick plan plant play
print protect push quote race reach read rent repair ride rise rock roll run save say scan
search see sell send serve share shine shop show sign sing sit skate ski sleep smile solve
speak spend start stay stream study surf swap swim switch talk taste teach tell think track
trade train travel try turn use visit vote wait walk want wash watch win wish work write
""")

EN_ADJECTIVES = _words("""
active alpha amazing ancient angry any apex aqua arctic awesome basic best better big bitter
black blank blue bold brave bright brilliant brown busy calm central cheap chief classic clean
clear clever close cloudy cold cool cosmic cozy crazy creative crisp cute daily dark dear deep
direct divine dry dual dynamic eager early easy eco electric elite empty epic even ever exact
extra fair famous fancy fast fat fine first flat fluffy free fresh friendly full funny future
gentle giant global glossy golden good grand great green happy hard healthy heavy hidden high
holy honest hot huge humble ideal infinite inner instant iron jolly just kind large last late
lazy lean light little live local lonely long lost loud lovely low loyal lucky magic main major
mega mellow mighty mini modern native near neat new next nice noble north odd old open orange
organic outer pacific perfect pink plain polar polite poor prime private pro proper proud pure
purple quick quiet rapid rare raw ready real red rich right rising robust royal rural rustic
safe sacred secret secure sharp shiny short silent simple single sleepy slim slow small smart
smooth snowy social soft solid sonic special speedy spicy steady sticky still strong sunny super
supreme sure sweet swift tall tasty tender tidy tiny top total tough true ultra united urban
useful vast velvet vital vivid warm wild wise wonder young yummy zen
""")

EN_TECH = _words("""
access admin agent ai algo analytics api app apps archive asset audit auth backup bit bitcoin
blockchain bot bots box broker browser buffer build bytes cache cart chip cloud cluster coder
coin connect console crypto cyber dash dashboard dev device devops digital direct disk dns docs
domain drive edge engine files firewall flow form forms frame gadget gaming geek grid hack hash
host hosting hub info insight kernel lab labs link linux logic login mail matrix media mobile
mod net node online pay pixel platform plug portal proxy query radar remote router saas scan
script secure server shop signal smart soft software solutions stack stats storage stream
sync system systems tech techno tools tracker tube vpn ware web wiki wifi zip
""")

EN_BUSINESS = _words("""
academy advisors agency alliance associates auction auto autos bakery bistro boutique brewery
builders capital care center centre chamber clinic club co collective consulting corp counsel
creations dental depot design designs direct distribution electric emporium energy
engineering enterprises estates events exchange experts express fabrics farm farms finance
financial fitness florist foods foundation funding furniture gallery garage gifts global goods
group guild homes hospitality hotel hotels imports industries institute insurance interiors
international investments jewelry kitchen labs landscaping law lawyers logistics luxury
machinery management manufacturing marine marketing media medical motors movers network
nursery outfitters partners pharmacy photography plumbing press printing productions
properties publishing realty records rentals repair research resources restaurant roofing
salon school services shipping shop shoes solutions sports store studio studios supplies
supply systems tailor tavern tech technologies textiles tours trading training transport
travel trust ventures vision wellness works workshop
""")

FIRST_NAMES = _words("""
aaron adam adrian alan albert alex alice amanda amber amy andrea andrew angela anna anne
anthony arthur ashley barbara ben benjamin beth betty bill bob brad brandon brian bruce carl
carlos carol caroline charles charlie chris christina claire daniel david dennis diana diane
donna doris dylan edward elena elizabeth ellen emily emma eric ethan eva frank gary george grace
greg hannah harry helen henry jack jacob james jane janet jason jeff jennifer jerry jessica jim
joan joe john jonathan jordan jose joseph joshua julia julie justin karen kate kathy kelly ken
kevin kim kyle larry laura lauren leo linda lisa louis lucas lucy luke maria mark martin mary
matt max megan melissa michael michelle mike nancy natalie nathan nick nicole noah oliver olivia
oscar pamela patrick paul peter philip rachel ralph rebecca richard rick robert roger ron rose
ruth ryan sam samuel sandra sarah scott sean sharon simon sophia stephen steve susan teresa
thomas tim tom tony tyler victoria vincent walter wayne william zoe
""")

SURNAMES = _words("""
adams allen anderson bailey baker barnes bell bennett brooks brown bryant butler campbell carter
clark cole collins cook cooper cox davis diaz edwards evans fisher foster garcia gibson gonzalez
gray green griffin hall harris hayes henderson hill howard hughes jackson james jenkins johnson
jones kelly kennedy king lee lewis long lopez marshall martin martinez miller mitchell moore
morgan morris murphy myers nelson parker patterson perry peterson phillips powell price reed
reyes richardson rivera roberts robinson rogers ross russell sanders scott simmons smith stewart
sullivan taylor thomas thompson torres turner walker wallace ward watson white williams wilson
wood wright young
""")

PLACES = _words("""
alaska albany alberta alps amazon amsterdam andes arizona atlanta atlantic austin avalon bahia
baltic bangkok barcelona bavaria bayside beacon berlin bolton boston brighton bristol brooklyn
cairo calgary california cambridge camden canada capetown carolina cascade catalina chelsea
chester chicago cleveland colorado columbia cornwall dakota dallas delhi denver detroit devon
dover dublin durham eden elmwood essex florida fremont fresno geneva georgia glasgow hamilton
hampton harlem hartford havana hawaii highland hollywood houston hudson idaho indiana iowa
jersey kansas kent kentucky kingston lagos lancaster leeds lima lincoln lisbon liverpool london
madison madrid maine malibu manchester manhattan manila marina melbourne memphis miami michigan
milan milford montana montreal munich nashville nevada newport norfolk oakland oakwood ohio
oklahoma ontario oregon orlando osaka oxford pacific paris phoenix pittsburgh plymouth portland
prague quebec raleigh richmond riverside rome salem sahara savannah seattle sherwood sierra
sofia springfield stanford sydney tahoe tampa texas tokyo toronto tucson utah vegas venice
vermont vienna virginia warsaw washington wellington windsor winston york yukon
""")

EN_WORDS_LARGE = _words(
    " ".join(EN_NOUNS + EN_VERBS + EN_ADJECTIVES + EN_TECH + EN_BUSINESS + PLACES)
)

# Romanised common words of other languages (site home languages and the global web).
LANG_WORDS_LARGE: dict[str, tuple[str, ...]] = {
    "de": _words("""
        abend alpen apotheke arbeit arzt auto autohaus bad bahn bank bau bauer baum berg bier
        bild blatt blume boden brief brot bruder buch buero burg dach dorf drucker ecke ehe eis
        eltern ende energie erde fabrik fahrrad familie farbe feld fenster fest feuer film
        fisch fleisch fluss forst frau freizeit freund frucht fuchs garten gast gebaeude geld
        gemeinde gesundheit glas glueck gold gruen gut hafen hand handel handwerk haus heim
        heimat held herz hilfe himmel hof holz honig hotel hund insel jagd jugend kaffee kanal
        katze kauf keller kind kino kirche klang klinik koch kopf kraft kreis kueche kunst land
        laden leben licht liebe luft markt maschine meer mensch messe mode mond morgen muehle
        musik mutter nacht natur netz neu nord ofen park pferd platz post praxis preis rad rat
        raum recht reise rhein ring rose ruhe sache salz sand schiff schloss schmuck schnee
        schule schuh see segel sonne spiel sport stadt stahl stein stern strand strasse stube
        sued tag tal tanz technik tee tier tisch tor traum tuer uhr urlaub verein verlag
        versand vogel wagen wald wand wasser weg wein welt werk werkstatt wetter wiese wind
        winter wohnen wolf zahn zeit zeitung zimmer zug
        """),
    "es": _words("""
        abogado agua aire alma amigo amor arbol arena arte azul banco barrio belleza blanco
        boda bosque buen cafe calle cama camino campo casa caballo cielo ciudad clinica coche
        cocina color comida compra corazon costa cuerpo cultura deporte dia dinero doctor
        dulce escuela espacio estrella familia farmacia feliz fiesta flor fuego futbol gato
        gente gran grupo hermano hogar hotel huerta isla jardin joven juego libro limpio luna
        luz madre mar mercado mesa mi mundo musica negocio noche norte nuevo ojo oro padre pais
        pan papel parque paseo perro pescado piedra playa plaza pueblo puerta radio rio rojo
        ropa sabor salud sol sombra sur taller tienda tierra tiempo todo trabajo tren vaca
        valle venta verde viaje vida vino zapato
        """),
    "pt": _words("""
        agua alegria amigo amor arte azul bairro banco barco beleza bem bicho bolo bom brasil
        cachorro cafe caminho campo carro casa cerveja cidade coisa comida compra cor coracao
        costa cozinha cultura dinheiro doce escola esporte estrela familia farmacia festa flor
        fogo futebol gato gente grande grupo hoje ilha imovel jardim jogo lar leite livro loja
        lua luz mae mar mercado mesa mundo musica noite norte novo ouro pai pao papel parque
        pedra peixe pessoa praia praca preco pronto rio roupa sabor saude sol sonho sul terra
        tempo trabalho vaca vale venda verde viagem vida vila vinho
        """),
    "fr": _words("""
        ami amour arbre art atelier auberge avenir bain beau belle blanc bleu bois bon boucherie
        boulangerie boutique cafe campagne chat chateau chemin cheval chien ciel cinema citron
        coeur couleur cuisine depot douce ecole enfant etoile famille fer ferme fete feu fleur
        fromage gare gateau grand jardin jeu jour lait lumiere lune maison mairie marche mer
        meuble monde montagne musique neige noir nord nuit papier parc pain petit pierre plage
        pomme pont port quartier rouge route rue sante soleil sud table terre train vache
        village ville vin voyage
        """),
    "it": _words("""
        acqua amico amore arte azzurro bagno bar bella bello bianco bosco buono caffe campo
        cane casa castello cielo citta colore cucina cuore dolce donna fiore fiume forno
        fratello fuoco gatto gelato giardino gioco giorno grande isola lago latte libro luce
        luna madre mare mercato mondo monte musica negozio nero notte nuovo oro pane parco
        pasta pesce piazza pietra pizza ponte porto rosa rosso sale salute sole sera stella
        strada terra tempo torre treno valle verde via viaggio vino
        """),
    "nl": _words("""
        auto bakker bank bed bloem boek boer boom boot brood dag dier dorp fiets geld groen
        haven hond huis hout kaas kamer kerk kind klok koe koffie kunst land licht markt meer
        molen nacht natuur plein post rivier school schip spel stad straat strand tuin vis
        vogel water weg werk wereld wind winkel zee zon
        """),
    "id": _words("""
        air anak api bagus baju bank baru batik bersama besar bintang buku bulan bunga cahaya
        cantik cepat cinta dagang dapur desa dunia emas gula gunung harapan harga hati hijau
        hujan ikan indah jalan jaya kabar kampung kain kerja kecil keluarga kopi kota kuat
        laut makan maju malam mandiri mas mobil motor murah nusantara padi pagi pasar pintar
        pulau putih rumah sakti sari sehat sejahtera sekolah sentosa sinar sumber surya tanah
        teman toko utama warung
        """),
    "tr": _words("""
        ada agac aile anne araba arkadas ates ay bahce baba balik bilgi buyuk cay cicek cocuk
        dag deniz dunya ev eczane emlak fiyat guzel gunes haber hayat hediye hizli is kahve
        kapi kitap kolay kucuk magaza market mavi mutfak muzik okul oyun para pazar renk sanat
        saglik sehir seker sevgi spor su toprak tatil yapi yemek yeni yildiz yol
        """),
    "pl": _words("""
        auto bank biuro chleb cukier dobry dom drzewo dziecko gora gra jezioro kawa kino kolor
        kot kraj kwiat las lato lekarz miasto mieszkanie morze muzyka nowy ogrod okno pies
        piekarnia praca rodzina rower ryba rynek sklep slonce sport stary szkola swiat woda
        zdrowie ziemia zloto
        """),
    "ru": _words("""
        avto bank bereg bystro chas chistyi deti dom doroga drug eda gazeta gorod gory gruz
        igra kafe kino kniga krasota les lesnoy luna magazin mama mebel mir more moskva muzyka
        nash novyi novosti ogon ostrov park pogoda rabota reka rynok sad sever sila sochi solntse
        sport stroy svet tekhno tovar tsvet udacha uyut voda vostok zdorovie zemlya zoloto
        """),
    "ja": _words("""
        aoi asahi chiba daiichi fuji fukuoka genki hana hikari hiroshima hokkaido hoshi ichiban
        kaze kobe kumo kyoto matsu midori mirai mori nagoya nihon nippon nishi niwa osaka sakura
        sapporo sendai shin shinkansen shiro sora taiyo takara tanaka tokyo umi yama yamato
        yokohama yume yuki
        """),
    "zh": _words("""
        an bao bei cai chang cheng da dian dong du fa fang fei feng fu gao guang guo hai hang
        hao he hong hua huang ji jia jian jin jing kang kuai le li lian long mei min ming nan
        ping qi qian qing ren rong shang shen sheng shi shu tai tian tong wang wei wen xin xing
        xiang xue yang yi yuan yun zhi zhong zhou ai ba bai ban bang bo chao chen chu chuan
        dai dao de di ding fan gong hu jiang jiao jie ju kai ke kong lai lang lin liu lu ma
        mao meng mi nian niu pai pin pu qiao quan rui sai san sen shan shao sheng si song su
        tang tao teng ting tu wan wu xi xia xiao xie xu ya yan ye yin ying you yu ze zhan
        zhang zhao zheng zhu zi zong zu zuo
        """),
    "vi": _words("""
        an anh bao ban bat binh cafe cho cong dan dat dep dien dong du duc gia giai giao ha
        hai hang hoa hoc hung huong khoa kinh lam linh long mai may minh moi mua nam ngoc nha
        nhanh phim pho phong phu quan quang sach sai sao son tai tam tan thanh the thoi thu
        tien tin toan trang tre trung tuan tuoi van viet vinh xanh xe xinh
        """),
    "fa": _words("""
        ahang akhbar ayande azad bank bartar bazar behtar dade daneshgah danesh didar doost
        film gozaresh hamrah iran irani kala karo ketab khabar khane khodro kish mehr modern
        musighi nashr navid novin pars parsi pardis payam rayan rooz sabz salamat sanat sara
        shahr shop tak tehran tejarat vatan varzesh
        """),
    "hi": _words("""
        apna bharat bazaar chai desh dhan dainik dost gaon ghar gyan hindi india jagran jobs
        kaam khabar kisan mandi mera naukri news pariwar pradesh rashtra result sabka samachar
        sarkari seva shiksha sukh swasth taaza times vikas yatra yojana
        """),
    "ko": _words("""
        bada baro bit bom busan chan daum dong ga gang haneul hana hanguk ilbo jang jeong jin
        jung kim maeul min mir nara nuri pyeong sarang seo seoul shin sol song sori sun tteok
        uri yeon yong
        """),
}

# Function words and fillers that real multi-word names are built with.
PHRASE_HEADS = _words("""
the my your our best free top all get go just real simple daily just love i we pure
""")
PHRASE_JOINERS = _words("and of for in on to n by with at")
PHRASE_ENDS = _words("""
site online world guide hub zone now today daily news blog club shop store central base
place spot life lab home group direct center network pro
""")
INFRA_SUFFIXES = _words("""
cdn api static img assets edge dns mail host cloud data sys apps web media files dl
stat track metrics push content video pic
""")

# Pinyin initials are a common way to name Chinese sites (the first letter of each syllable),
# often with a lucky or local number: weights of syllable initials in running Mandarin.
PINYIN_INITIAL_WEIGHTS = {
    "b": 3.0,
    "c": 2.0,
    "d": 4.0,
    "f": 2.0,
    "g": 3.5,
    "h": 4.5,
    "j": 5.0,
    "k": 1.5,
    "l": 4.0,
    "m": 3.0,
    "n": 2.0,
    "p": 1.5,
    "q": 2.5,
    "r": 1.5,
    "s": 5.0,
    "t": 3.0,
    "w": 3.5,
    "x": 4.5,
    "y": 5.0,
    "z": 5.5,
    "a": 0.5,
    "e": 0.3,
    "o": 0.2,
}
CHINESE_NUMBERS = _words("51 52 58 66 88 99 114 123 163 168 360 365 518 520 666 888 0371 0755 0791")
KANA_SYLLABLES = _words("""
a i u e o ka ki ku ke ko sa shi su se so ta chi tsu te to na ni nu ne no ha hi fu he ho
ma mi mu me mo ya yu yo ra ri ru re ro wa n ga gi gu ge go za ji zu ze zo da de do ba bi
bu be bo pa pi pu pe po kyo kyu sho shu cho ryo
""")

# (TLD, weight) per language, for the long tail of small sites people in that language run.
# .com dominates everywhere; each country's own ccTLD leads at home. Every entry is a public
# suffix in the ICANN section of the PSL, so label + "." + TLD is a registered domain.
LANG_TLD_MIX: dict[str, tuple[tuple[str, float], ...]] = {
    "en": (
        ("com", 50),
        ("net", 6),
        ("org", 5),
        ("co.uk", 3),
        ("io", 2.5),
        ("co", 2),
        ("us", 1.5),
        ("info", 2.5),
        ("com.au", 1.5),
        ("ca", 1.5),
        ("uk", 0.8),
        ("me", 1),
        ("xyz", 1.8),
        ("online", 1.2),
        ("site", 0.8),
        ("shop", 0.8),
        ("store", 0.6),
        ("app", 1),
        ("dev", 0.6),
        ("ai", 0.8),
        ("tv", 0.6),
        ("biz", 1),
        ("club", 0.5),
        ("blog", 0.3),
        ("top", 1.5),
        ("live", 0.4),
        ("tech", 0.4),
        ("pro", 0.3),
        ("news", 0.2),
        ("cc", 0.7),
        ("eu", 0.3),
        ("ie", 0.4),
        ("nz", 0.4),
        ("in", 0.8),
        ("co.za", 0.6),
        ("cloud", 0.3),
        ("space", 0.2),
        ("world", 0.2),
        ("agency", 0.1),
        ("media", 0.2),
        ("studio", 0.1),
    ),
    "de": (
        ("de", 62),
        ("com", 18),
        ("at", 5),
        ("ch", 5),
        ("net", 3),
        ("eu", 2),
        ("org", 1.5),
        ("info", 1.5),
        ("online", 0.5),
        ("shop", 0.5),
        ("berlin", 0.2),
        ("io", 0.3),
    ),
    "es": (
        ("com", 34),
        ("es", 24),
        ("com.mx", 10),
        ("mx", 2),
        ("com.ar", 8),
        ("cl", 5),
        ("com.co", 5),
        ("co", 2),
        ("pe", 2),
        ("com.pe", 1),
        ("net", 2),
        ("org", 1.5),
        ("info", 1),
        ("uy", 0.5),
        ("cat", 0.5),
    ),
    "pt": (
        ("com.br", 56),
        ("com", 20),
        ("pt", 10),
        ("net.br", 2),
        ("org.br", 2),
        ("net", 2),
        ("org", 1),
        ("online", 0.5),
        ("app.br", 0.3),
        ("blog.br", 0.3),
    ),
    "fr": (
        ("fr", 52),
        ("com", 25),
        ("be", 6),
        ("ch", 3),
        ("ca", 3),
        ("net", 3),
        ("org", 2),
        ("eu", 2),
        ("info", 1),
        ("paris", 0.2),
    ),
    "it": (("it", 64), ("com", 24), ("net", 4), ("org", 2), ("eu", 2), ("info", 1.5)),
    "nl": (("nl", 64), ("com", 18), ("be", 8), ("eu", 3), ("net", 3), ("org", 1.5)),
    "id": (
        ("com", 30),
        ("co.id", 25),
        ("id", 20),
        ("web.id", 4),
        ("my.id", 3),
        ("or.id", 3),
        ("ac.id", 2),
        ("net", 3),
        ("xyz", 2),
        ("site", 1),
        ("online", 1),
    ),
    "tr": (
        ("com.tr", 38),
        ("com", 34),
        ("net", 4),
        ("org", 2),
        ("net.tr", 3),
        ("org.tr", 2),
        ("gen.tr", 1),
        ("web.tr", 1),
        ("tr", 3),
        ("info", 1),
    ),
    "pl": (
        ("pl", 62),
        ("com.pl", 6),
        ("com", 16),
        ("net.pl", 2),
        ("org.pl", 2),
        ("eu", 3),
        ("net", 2),
        ("info", 1),
        ("waw.pl", 0.5),
    ),
    "ru": (
        ("ru", 58),
        ("com", 14),
        ("su", 3),
        ("net", 4),
        ("org", 3),
        ("info", 2),
        ("pro", 1),
        ("online", 1),
        ("site", 1),
        ("ua", 3),
        ("com.ua", 2),
        ("by", 2),
        ("kz", 2),
        ("uz", 0.5),
    ),
    "ja": (
        ("jp", 38),
        ("co.jp", 20),
        ("ne.jp", 3),
        ("or.jp", 2),
        ("com", 30),
        ("net", 4),
        ("tokyo", 0.5),
        ("info", 1),
    ),
    # The rest of the world: sites under every other country's TLD (and the ccTLDs sold as
    # "domain hacks" everywhere), named with the general shapes.
    "world": tuple(
        (tld, weight)
        for weight, group in (
            (3.0, "io co me tv ai cc us eu ca in com.au co.uk"),
            (1.5, "gg to ly fm so sh ac la ws nu vc sc mu"),
            (
                1.0,
                "ch at be se no dk fi cz sk hu ro bg gr pt lt lv ee si hr rs ba mk al md ge am "
                "az kz uz by ua com.ua lk pk bd com.np my com.my sg com.sg ph com.ph th co.th "
                "co.nz nz co.za ng com.ng ke co.ke eg com.eg ma tn dz il co.il ae sa com.sa qa "
                "kw cl com.co pe com.pe ec ve uy com.uy py bo cr com.do gt mx com.mx ar com.ar "
                "is ie lu li mt cy mn kg tj tw com.tw hk com.hk",
            ),
        )
        for tld in group.split()
    ),
    "vi": (("vn", 40), ("com.vn", 25), ("com", 25), ("net", 5), ("edu.vn", 2), ("net.vn", 2)),
    "fa": (("ir", 58), ("com", 26), ("net", 5), ("org", 3), ("co.ir", 2), ("info", 2)),
    "hi": (("in", 34), ("co.in", 18), ("com", 36), ("net", 3), ("org", 3), ("org.in", 1)),
    "ko": (("kr", 22), ("co.kr", 26), ("com", 42), ("net", 5), ("or.kr", 2)),
    "zh": (
        ("com", 34),
        ("cn", 26),
        ("com.cn", 10),
        ("net", 6),
        ("net.cn", 2),
        ("top", 5),
        ("xyz", 3),
        ("cc", 3),
        ("vip", 1.5),
        ("com.tw", 2),
        ("tw", 1.5),
        ("com.hk", 1.5),
        ("hk", 1),
        ("org", 1),
        ("cloud", 0.5),
        ("ltd", 0.5),
        ("wang", 0.5),
    ),
}

# Languages a resolver anywhere sees some of, besides its own site's languages (the web is
# global): weights of the foreign part of a site's long tail.
GLOBAL_LANGUAGES: dict[str, float] = {
    "en": 6.0,
    "zh": 1.5,
    "de": 1.2,
    "ja": 1.0,
    "pt": 1.0,
    "ru": 1.0,
    "fr": 0.9,
    "es": 0.9,
    "it": 0.6,
    "nl": 0.5,
    "pl": 0.4,
    "tr": 0.4,
    "id": 0.4,
    "vi": 0.5,
    "fa": 0.4,
    "hi": 0.6,
    "ko": 0.4,
    "world": 2.5,
}

# Letters that start words in English text, roughly: initials of acronyms follow them.
INITIAL_WEIGHTS = {
    "a": 6.0,
    "b": 4.5,
    "c": 7.0,
    "d": 4.0,
    "e": 3.0,
    "f": 3.5,
    "g": 3.0,
    "h": 3.0,
    "i": 3.0,
    "j": 1.0,
    "k": 1.2,
    "l": 3.0,
    "m": 5.5,
    "n": 3.0,
    "o": 2.0,
    "p": 6.0,
    "q": 0.3,
    "r": 4.0,
    "s": 8.0,
    "t": 5.5,
    "u": 1.5,
    "v": 1.5,
    "w": 3.0,
    "x": 0.4,
    "y": 0.5,
    "z": 0.4,
}

# Pieces that brand names are built from: invented, pronounceable, often clipped.
BRAND_HEADS = _words("""
ab ac ad aer al am an ap aqu ar as at au av ax az bel bio bl bo br bu ca cal cam can cap car
cel cen chr cl co col com con cor cr cu cy da dal de del di do dr du dy el em en ep eq ev ex fa
fl fo fr fu ga gen gl go gr ha he hy in inf int ja jo ka ke ki kl ko kr la le li lo lu ly ma
me mi mo mu my na ne ni no nu ny ob oc om op or pa pe ph pi pl po pr pu qu ra re ri ro ru sa
se si sk sl sm sn so sp st su sw sy ta te th ti to tr tu ty ul un ur va ve vi vo wa we wi wo
xa xe ya yo za ze zi zo
""")
BRAND_MIDDLES = _words("""
a e i o u y ab ag al am an ar as at av el em en er es et ev ic il im in ir is it iv ol om on
or os ot ov ul um un ur us
""")
BRAND_TAILS = _words("""
a ado ago al ale ami an ana ance ant ar ara ari ary as ate ax ea eo er era ero ex ia ica ico
id ify ika ile im ina io ion is ity ium iva ix ly o oo ora os ox um us ya yx za zo
""")
BRAND_AFFIXES = _words("""
app apps box bee bit buzz cart cast craft desk deck dock feed flow fly gen go grid hq hub io
kit lab labs lane lify loop ly ma mate mind mint nest ninja nova now ology ops pad pal path
pay pilot pod point pop port pro rise scape shift spot stack star station sync tastic team
tech ster tly verse ville ware way wise wiz works zilla zone
""")
BRAND_PREFIXES = _words("""
all any best buy e eco ez get go hello hey i im my neo next one open our pro re smart super
the try u up we your
""")

# Dynamic-DNS and hosting-platform parents: home NAS boxes, cameras, hobby servers and
# malware alike get a host name under them.
DYNAMIC_DNS_PARENTS = _words("""
ddns.net duckdns.org no-ip.org no-ip.biz hopto.org zapto.org sytes.net myftp.org dynu.net
freeddns.org dyndns.org servebeer.com
""")
HOME_DEVICE_PARENTS = DYNAMIC_DNS_PARENTS + _words("synology.me myqnapcloud.com")
